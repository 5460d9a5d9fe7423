"""A multi-node Ray cluster on this machine, owned by this process, driven over stdin.

    python tests/system/cluster_manager.py TEMP_DIR WORKERS

Starts ``ray.cluster_utils.Cluster``: a head with ``num_cpus=0`` (no work lands there, as on
the real cluster) and WORKERS worker nodes of one CPU, every process under its own TEMP_DIR and
on free ports, then answers ``{"address": ...}`` (``managed_cluster.answer``). Commands, one
per line: ``kill`` (the oldest worker node, its processes killed at once: a lost spot
instance), ``add`` (a new worker node), ``quit``. Each is answered with one JSON line. Run as a
subprocess by the tests, so that the test session's own private Ray is neither used nor
touched; stopping it stops only its nodes.
"""

from __future__ import annotations

import socket
import sys

from managed_cluster import answer


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    from ray.cluster_utils import Cluster

    temp_dir, workers = sys.argv[1], int(sys.argv[2])
    head = {"num_cpus": 0, "include_dashboard": False, "temp_dir": temp_dir, "gcs_server_port": _port(),
            "ray_client_server_port": _port(), "dashboard_agent_listen_port": _port(),
            "metrics_export_port": _port(), "metrics_agent_port": _port(),
            "runtime_env_agent_port": _port(), "dashboard_port": _port(),
            "object_store_memory": 200 * 1024 * 1024}
    cluster = Cluster(initialize_head=True, head_node_args=head)

    def add():
        return cluster.add_node(num_cpus=1, temp_dir=temp_dir, metrics_export_port=_port(),
                                metrics_agent_port=_port(), runtime_env_agent_port=_port(),
                                object_store_memory=150 * 1024 * 1024)

    nodes = [add() for _ in range(workers)]
    cluster.wait_for_nodes()
    answer({"address": cluster.address})
    try:
        for line in sys.stdin:
            command = line.strip()
            if command == "kill" and nodes:
                node = nodes.pop(0)
                cluster.remove_node(node, allow_graceful=False)
                answer({"killed": node.node_id})
            elif command == "add":
                nodes.append(add())
                cluster.wait_for_nodes()
                answer({"added": nodes[-1].node_id})
            elif command == "quit":
                break
            else:
                answer({"error": f"unknown command {command!r}"})
    finally:
        cluster.shutdown()


if __name__ == "__main__":
    main()
