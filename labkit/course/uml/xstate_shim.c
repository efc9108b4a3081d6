/*
 * LD_PRELOAD shim that lets Debian 12's user-mode-linux (6.1) run on hosts
 * whose XSAVE area is larger than the 832 bytes UML was built for (CPUs with
 * AVX-512 or AMX).
 *
 * Why: UML saves and restores the FPU state of its processes with
 * ptrace(PTRACE_GETREGSET/SETREGSET, NT_X86_XSTATE) using a fixed 832-byte
 * buffer. Reading a prefix is allowed, but the host kernel refuses to *set*
 * anything shorter than its full XSAVE size (EFAULT), and UML panics with
 * "ptrace set fp regs failed, errno = 14".
 *
 * What: for each buffer UML uses, keep the full state read from the host
 * beside it; on a set, overlay UML's (possibly changed) prefix on that full
 * state and hand the kernel a buffer of the size it wants. A buffer never
 * read before is completed with the "initial" state: its header keeps only the
 * features that fit inside the prefix. Calls that already have the full
 * size, and every other ptrace request, pass through untouched.
 */
#define _GNU_SOURCE
#include <cpuid.h>
#include <dlfcn.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/types.h>
#include <sys/uio.h>

#define NT_X86_XSTATE 0x202
#define XSTATE_HEADER 512        /* offset of xstate_bv in the standard format */
#define MAX_XSTATE (64 * 1024)
#define SLOTS 4096

typedef long (*ptrace_fn)(int, pid_t, void *, void *);

struct slot {
	void *key;               /* UML's buffer */
	unsigned char *full;     /* the host's full XSAVE image for it */
};

static ptrace_fn real_ptrace;
static size_t full_size;
static struct slot slots[SLOTS];

static struct slot *slot_for(void *key, int create)
{
	size_t i = ((uintptr_t)key >> 4) % SLOTS;

	for (size_t n = 0; n < SLOTS; n++, i = (i + 1) % SLOTS) {
		if (slots[i].key == key)
			return &slots[i];
		if (slots[i].key == NULL) {
			if (!create)
				return NULL;
			slots[i].key = key;
			slots[i].full = calloc(1, full_size);
			return slots[i].full ? &slots[i] : NULL;
		}
	}
	return NULL;
}

/* Size of the host's XSAVE image, as ptrace reports it. */
static int learn_full_size(pid_t pid)
{
	static unsigned char probe[MAX_XSTATE];
	struct iovec iov = { probe, sizeof(probe) };

	if (real_ptrace(PTRACE_GETREGSET, pid, (void *)NT_X86_XSTATE, &iov) < 0)
		return -1;
	full_size = iov.iov_len;
	return 0;
}

/* Drop from xstate_bv the features whose state lies beyond `len` bytes:
 * the kernel then loads their initial (zero) state. */
static void keep_features_within(unsigned char *buf, size_t len)
{
	uint64_t bv;

	memcpy(&bv, buf + XSTATE_HEADER, sizeof(bv));
	for (unsigned int bit = 2; bit < 64; bit++) {
		unsigned int size, offset, ecx, edx;

		if (!(bv & (1ULL << bit)))
			continue;
		__cpuid_count(0xd, bit, size, offset, ecx, edx);
		if (offset + size > len)
			bv &= ~(1ULL << bit);
	}
	memcpy(buf + XSTATE_HEADER, &bv, sizeof(bv));
}

long ptrace(enum __ptrace_request request, ...)
{
	va_list ap;
	pid_t pid;
	void *addr, *data;
	struct iovec *iov;

	va_start(ap, request);
	pid = va_arg(ap, pid_t);
	addr = va_arg(ap, void *);
	data = va_arg(ap, void *);
	va_end(ap);

	if (!real_ptrace)
		real_ptrace = (ptrace_fn)dlsym(RTLD_NEXT, "ptrace");

	iov = data;
	if ((request != PTRACE_GETREGSET && request != PTRACE_SETREGSET) ||
	    (uintptr_t)addr != NT_X86_XSTATE || iov == NULL)
		return real_ptrace(request, pid, addr, data);
	if (!full_size && learn_full_size(pid) < 0)
		return real_ptrace(request, pid, addr, data);
	if (iov->iov_len >= full_size)
		return real_ptrace(request, pid, addr, data);

	if (request == PTRACE_GETREGSET) {
		struct slot *s = slot_for(iov->iov_base, 1);
		struct iovec whole;

		if (!s)
			return real_ptrace(request, pid, addr, data);
		whole.iov_base = s->full;
		whole.iov_len = full_size;
		if (real_ptrace(PTRACE_GETREGSET, pid, addr, &whole) < 0)
			return -1;
		memcpy(iov->iov_base, s->full, iov->iov_len);
		return 0;
	} else {
		struct slot *s = slot_for(iov->iov_base, 0);
		unsigned char *buf = s ? s->full : calloc(1, full_size);
		struct iovec whole = { buf, full_size };
		long ret;

		if (!buf)
			return real_ptrace(request, pid, addr, data);
		memcpy(buf, iov->iov_base, iov->iov_len);
		if (!s)
			keep_features_within(buf, iov->iov_len);
		ret = real_ptrace(PTRACE_SETREGSET, pid, addr, &whole);
		if (!s)
			free(buf);
		return ret;
	}
}
