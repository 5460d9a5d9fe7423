"""The HTTP service on a multi-node Ray cluster on this machine, owned by this process, driven
over stdin (used by test_service_failover.py).

    python tests/system/service_cluster.py TEMP_DIR HTTP_PORT SETTINGS_JSON

Starts ``ray.cluster_utils.Cluster``: a head with ``num_cpus=0`` (the Serve controller, the HTTP
proxy and the ingress, placed there by the custom resource ``fs_head``) and one worker node
"a" with one CPU and the resource ``fs_service`` that the analysis coordinator replica and the
analysis runners ask for (``FRAMESIFT_RUNNER_RESOURCES``), so both start there. Every process
lives under TEMP_DIR. Then it deploys the application and answers ``{"ready": ...}``.

Commands, one per line, each answered with one JSON line (``managed_cluster.answer``):

- ``add``: a second worker node "b" like "a" (so the coordinator and runners can move there),
- ``where``: the node ("head", "a", "b") of the coordinator replica and of each runner,
- ``kill``: node "a" removed at once, its processes killed (a lost spot instance),
- ``quit``.

The service's settings come from SETTINGS_JSON and the environment (the database URL and the
object store's credentials), as on a real cluster. A subprocess, so that the test session's
own private Ray is neither used nor touched; stopping it stops only its nodes.
"""

from __future__ import annotations

import json
import socket
import sys

from managed_cluster import answer


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    import ray
    from ray import serve
    from ray.cluster_utils import Cluster

    from serve.app import AnalysisCoordinator, Ingress

    temp_dir, http_port, settings = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
    head = {"num_cpus": 0, "resources": {"fs_head": 1}, "include_dashboard": False,
            "temp_dir": temp_dir, "gcs_server_port": _port(), "ray_client_server_port": _port(),
            "dashboard_agent_listen_port": _port(), "metrics_export_port": _port(),
            "metrics_agent_port": _port(), "runtime_env_agent_port": _port(),
            "dashboard_port": _port(), "object_store_memory": 200 * 1024 * 1024,
            # a lost node is noticed within about 10 s (default: 15 s)
            "_system_config": {"health_check_period_ms": 2000,
                               "health_check_failure_threshold": 5}}
    cluster = Cluster(initialize_head=True, head_node_args=head)
    nodes: dict[str, object] = {}

    def add(name: str) -> None:
        nodes[name] = cluster.add_node(num_cpus=1, resources={"fs_service": 1},
                                       temp_dir=temp_dir, metrics_export_port=_port(),
                                       metrics_agent_port=_port(), runtime_env_agent_port=_port(),
                                       object_store_memory=150 * 1024 * 1024)
        cluster.wait_for_nodes(timeout=120)

    def node_name(node_id: str) -> str:
        if node_id == cluster.head_node.node_id:
            return "head"
        return next((n for n, node in nodes.items() if node.node_id == node_id), node_id)

    def where() -> dict:
        out: dict = {"runners": {}}
        for actor in ray._private.state.actors().values():
            if actor["State"] != "ALIVE":
                continue
            node = node_name(actor["Address"]["NodeID"])
            if actor["ActorClassName"].endswith("AnalysisCoordinator"):
                out["coordinator"] = node
            elif actor["ActorClassName"] == "AnalysisRunner":
                out["runners"][actor["Name"]] = node
        return out

    add("a")
    ray.init(address=cluster.address, log_to_driver=False)
    serve.start(proxy_location="HeadOnly", http_options={"host": "127.0.0.1", "port": http_port})
    coordinator = AnalysisCoordinator.options(
        health_check_period_s=2, health_check_timeout_s=10,
        ray_actor_options={"num_cpus": 0, "resources": {"fs_service": 0.01}})
    ingress = Ingress.options(ray_actor_options={"num_cpus": 0, "resources": {"fs_head": 0.01}})
    serve.run(ingress.bind(coordinator.bind(settings), settings), name="framesift",
              route_prefix="/")
    answer({"ready": cluster.address})
    try:
        for line in sys.stdin:
            command = line.strip()
            if command == "add":
                add("b")
                answer({"added": "b"})
            elif command == "where":
                answer(where())
            elif command == "kill":
                cluster.remove_node(nodes.pop("a"), allow_graceful=False)
                answer({"killed": "a"})
            elif command == "quit":
                break
            else:
                answer({"error": f"unknown command {command!r}"})
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
            cluster.shutdown()


if __name__ == "__main__":
    main()
