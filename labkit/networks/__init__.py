"""Stage 6 — virtual networks: how containers talk to each other and to the
world, built from the kernel pieces Docker's bridge driver uses.

  store.py      networks and their endpoints on disk ($LABKIT_HOME/networks),
                one lock for all of them, and the subnets networks take
  ipam.py       the addresses in a subnet: endpoints' from the bottom,
                services' virtual IPs (vips.py) from the top
  links.py      the links: a bridge per network, a veth pair per container
                with its peer moved into the container's namespace, the
                addresses and default route inside; `ip` commands, as a student
                would type them
  firewall.py   nftables: masquerade for the way out, DNAT for published
                ports, a drop between two networks; one table, `ip labkit`
  ports.py      -p [IP:]HOSTPORT:CONTAINERPORT[/PROTO], and when a port is taken
  hosts.py      names: every container's /etc/hosts lists the others on its network
  cni.py        the other driver: Debian's CNI plugins (bridge, host-local,
                loopback) run through the CNI protocol, as podman and
                Kubernetes do
  endpoints.py  connect and disconnect a process's namespace; what gc removes

runc does no networking at all: a network is set up around a container by
whoever starts it (Docker's libnetwork, podman's netavark or CNI), from hooks.
labkit does it from a stage of its runner (labkit/stages/network.py) for
`labkit run`, and from OCI hooks (`labkit network connect NET -`) for a bundle.

Layer 2: may import labkit.linux and the vocabulary, never the stages or the
runtime (they call it).
"""
