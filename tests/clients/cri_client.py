"""A very small CRI (runtime.v1) client: the few RuntimeService calls a
kubelet makes to run one pod, over grpcio with the protobuf wire format
written by hand. Only the fields the tests use are here; their numbers are
those of kubernetes/cri-api pkg/apis/runtime/v1/api.proto.

A message is a list of (field number, value): an int is a varint, a str or
bytes is length-delimited, a list of pairs is a submessage."""

import grpc

# NamespaceMode and ContainerState, as the proto numbers them.
POD, CONTAINER, NODE = 0, 1, 2
CONTAINER_STATES = {0: "CREATED", 1: "RUNNING", 2: "EXITED", 3: "UNKNOWN"}
SANDBOX_STATES = {0: "READY", 1: "NOTREADY"}


def _varint(n):
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def encode(fields):
    out = bytearray()
    for num, value in fields:
        if value is None:
            continue
        if isinstance(value, bool) or isinstance(value, int):
            out += _varint(num << 3) + _varint(int(value))
        else:
            data = value.encode() if isinstance(value, str) else value if isinstance(value, bytes) \
                else encode(value)
            out += _varint(num << 3 | 2) + _varint(len(data)) + data
    return bytes(out)


def decode(data):
    """{field number: [raw values]}: ints for varints, bytes for the rest
    (decode a submessage again, .decode() a string)."""
    fields, i = {}, 0

    def varint():
        nonlocal i
        n = shift = 0
        while True:
            b = data[i]
            i += 1
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return n
    while i < len(data):
        key = varint()
        num, wire = key >> 3, key & 7
        if wire == 0:
            value = varint()
        elif wire == 2:
            size = varint()
            value, i = data[i:i + size], i + size
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            value, i = data[i:i + size], i + size
        else:
            raise ValueError(f"wire type {wire} of field {num} is not protobuf 3")
        fields.setdefault(num, []).append(value)
    return fields


def _str(fields, num):
    return fields.get(num, [b""])[0].decode()


def _int(fields, num):
    return fields.get(num, [0])[0]


def namespace_options(network=NODE, pid=POD, ipc=POD):
    return [(1, network), (2, pid), (3, ipc)]


def sandbox_config(name, uid, cgroup_parent, log_directory):
    """PodSandboxConfig: metadata, log_directory and linux (cgroup_parent and
    a security context of host network: no CNI needed)."""
    return [(1, [(1, name), (2, uid), (3, "default"), (4, 0)]),     # PodSandboxMetadata
            # no hostname (2): a host-network pod has the node's, as the kubelet sends it
            (3, log_directory),
            (8, [(1, cgroup_parent),                                # LinuxPodSandboxConfig
                 (2, [(1, namespace_options())])])]                 # LinuxSandboxSecurityContext


def container_config(name, image, command, log_path):
    """ContainerConfig: metadata, image, command, log_path, and linux's
    security context with the pod's host network."""
    return [(1, [(1, name), (2, 0)]),                               # ContainerMetadata
            (2, [(1, image)]),                                      # ImageSpec
            *[(3, word) for word in command],
            (11, log_path),
            (15, [(2, [(3, namespace_options())])])]                # LinuxContainerConfig.security_context


class RuntimeService:
    def __init__(self, socket, timeout=60):
        self.channel = grpc.insecure_channel(f"unix://{socket}")
        self.timeout = timeout

    def close(self):
        self.channel.close()

    def call(self, method, fields, timeout=None):
        stub = self.channel.unary_unary(f"/runtime.v1.RuntimeService/{method}",
                                        request_serializer=encode, response_deserializer=decode)
        return stub(fields, timeout=timeout or self.timeout)

    def version(self):
        r = self.call("Version", [(1, "v1")])
        return {"runtime_name": _str(r, 2), "runtime_version": _str(r, 3), "runtime_api_version": _str(r, 4)}

    def run_pod_sandbox(self, config, runtime_handler):
        return _str(self.call("RunPodSandbox", [(1, config), (2, runtime_handler)]), 1)

    def pod_sandbox_status(self, sandbox_id):
        status = decode(self.call("PodSandboxStatus", [(1, sandbox_id)])[1][0])
        return {"id": _str(status, 1), "state": SANDBOX_STATES.get(_int(status, 3)),
                "runtime_handler": _str(status, 9)}

    def stop_pod_sandbox(self, sandbox_id):
        self.call("StopPodSandbox", [(1, sandbox_id)])

    def remove_pod_sandbox(self, sandbox_id):
        self.call("RemovePodSandbox", [(1, sandbox_id)])

    def list_pod_sandbox(self):
        return [_str(decode(item), 1) for item in self.call("ListPodSandbox", []).get(1, [])]

    def create_container(self, sandbox_id, config, sandbox_config):
        return _str(self.call("CreateContainer", [(1, sandbox_id), (2, config), (3, sandbox_config)]), 1)

    def start_container(self, container_id):
        self.call("StartContainer", [(1, container_id)])

    def stop_container(self, container_id, timeout=10):
        self.call("StopContainer", [(1, container_id), (2, timeout)])

    def remove_container(self, container_id):
        self.call("RemoveContainer", [(1, container_id)])

    def container_status(self, container_id):
        status = decode(self.call("ContainerStatus", [(1, container_id)])[1][0])
        return {"id": _str(status, 1), "state": CONTAINER_STATES.get(_int(status, 3)),
                "exit_code": _int(status, 7), "reason": _str(status, 10), "message": _str(status, 11)}

    def list_containers(self):
        return [_str(decode(c), 1) for c in self.call("ListContainers", []).get(1, [])]
