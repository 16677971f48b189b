"""Helpers shared by the benchmark scripts in this directory (imported as
`benchlib`: Python puts a script's own directory on sys.path)."""
import socket


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def proc_status_kib(pid, key):
    """A `kB` field of /proc/PID/status (VmRSS, VmHWM, ...); 0 if absent,
    None if the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return 0
