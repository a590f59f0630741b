"""The federation's ServerApp: Flower's FedAvg over edgetune's linear classifier head.

The global model is the head on the backbone's embeddings: `weight` (classes x dim, float32,
row-major as edgetune stores it) and `bias` (classes). Each round FedAvg sends it to the nodes
with a config naming the class list and the backbone's hash (so a node on another backbone or
with other labels can refuse by name), each node trains it on its own samples and replies
with the trained head and its sample count, and FedAvg averages the replies weighted by that
count. Then every node evaluates the new global head on its samples. A node that drops out
is answered for by the SuperLink (an error reply when its heartbeats stop), and FedAvg goes on
with the replies it has.

With `clip-norm` > 0 the strategy is wrapped in Flower's
`DifferentialPrivacyClientSideFixedClipping` (`noise-multiplier` times the clipping norm of
Gaussian noise on the aggregate); the nodes clip their update as Flower's `fixedclipping_mod`
does (www/federation/node.js).

With `report` set, the ServerApp writes a JSON file after every round: the global head (as
the nodes receive it), the aggregated train and evaluate metrics, the errors that stood in
for replies, and the training phase's wall time.
"""

import json
import os
import time

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import DifferentialPrivacyClientSideFixedClipping, FedAvg

app = ServerApp()


class ReportingFedAvg(FedAvg):
    """FedAvg that records each round's global head and metrics for the report file."""

    def __init__(self, report_path: str, **kwargs):
        super().__init__(**kwargs)
        self.report_path = report_path
        self.rounds: list[dict] = []
        self.round_started = time.time()

    def configure_train(self, server_round, arrays, config, grid):
        self.round_started = time.time()
        return super().configure_train(server_round, arrays, config, grid)

    def aggregate_train(self, server_round, replies):
        replies = list(replies)
        arrays, metrics = super().aggregate_train(server_round, replies)
        entry = {
            "round": server_round,
            "replies": sum(1 for r in replies if r.has_content()),
            "errors": [r.error.reason for r in replies if r.has_error()],
            "train": dict(metrics) if metrics is not None else None,
            "seconds": time.time() - self.round_started,
        }
        self.rounds.append(entry)
        self._write()
        return arrays, metrics

    def aggregate_evaluate(self, server_round, replies):
        replies = list(replies)
        metrics = super().aggregate_evaluate(server_round, replies)
        if self.rounds and self.rounds[-1]["round"] == server_round:
            self.rounds[-1]["evaluate"] = dict(metrics) if metrics is not None else None
            self.rounds[-1]["evaluateReplies"] = sum(1 for r in replies if r.has_content())
        self._write()
        return metrics

    def record_global(self, server_round, arrays):
        """`evaluate_fn` of Strategy.start: the round's global head as the nodes get it
        (after a DP wrapper's noise, which aggregate_train here does not see)."""
        if server_round > 0 and self.rounds and self.rounds[-1]["round"] == server_round:
            self.rounds[-1]["weight"] = arrays["weight"].numpy().astype(np.float32).ravel().tolist()
            self.rounds[-1]["bias"] = arrays["bias"].numpy().astype(np.float32).ravel().tolist()
            self._write()
        return None

    def _write(self):
        if not self.report_path:
            return
        with open(self.report_path + ".tmp", "w", encoding="utf-8") as f:
            json.dump({"rounds": self.rounds}, f)
        os.replace(self.report_path + ".tmp", self.report_path)


@app.main()
def main(grid: Grid, context: Context) -> None:
    cfg = context.run_config
    classes = [c.strip() for c in str(cfg["classes"]).split(",") if c.strip()]
    dim = int(cfg["dim"])
    if len(classes) < 2 or len(set(classes)) != len(classes):
        raise ValueError(f"the federation needs at least two distinct classes, got {classes}")
    initial = ArrayRecord(
        {
            "weight": Array.from_numpy_ndarray(np.zeros((len(classes), dim), dtype=np.float32)),
            "bias": Array.from_numpy_ndarray(np.zeros((len(classes),), dtype=np.float32)),
        }
    )
    min_nodes = int(cfg["min-nodes"])
    fedavg = ReportingFedAvg(
        str(cfg.get("report", "")),
        fraction_train=float(cfg["fraction-train"]),
        fraction_evaluate=float(cfg["fraction-evaluate"]),
        min_train_nodes=min_nodes,
        min_evaluate_nodes=min_nodes,
        min_available_nodes=min_nodes,
    )
    strategy = fedavg
    clip = float(cfg.get("clip-norm", 0.0))
    if clip > 0:
        strategy = DifferentialPrivacyClientSideFixedClipping(
            fedavg,
            noise_multiplier=float(cfg.get("noise-multiplier", 0.0)),
            clipping_norm=clip,
            num_sampled_clients=min_nodes,
        )
    agreed = {
        "classes": ",".join(classes),
        "dim": dim,
        "backbone-sha256": str(cfg.get("backbone-sha256", "")),
    }
    train_config = ConfigRecord(
        {**agreed, "local-epochs": int(cfg["local-epochs"]), "learning-rate": float(cfg["learning-rate"])}
    )
    result = strategy.start(
        grid=grid,
        initial_arrays=initial,
        num_rounds=int(cfg["num-server-rounds"]),
        timeout=float(cfg["round-timeout"]),
        train_config=train_config,
        evaluate_config=ConfigRecord(agreed),
        evaluate_fn=fedavg.record_global,
    )
    last = result.evaluate_metrics_clientapp.get(int(cfg["num-server-rounds"]), MetricRecord())
    print(f"federation finished: last evaluation {dict(last)}")
