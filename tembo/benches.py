"""Tembo's benchmarks: `tembo bench NAME --json` runs BENCHES[NAME] and prints its dict of figures.

Each entry is "module:function"; the function takes keyword options and returns a dict of figures
measured in that run (ratios against an in-run baseline where wall-clock time is involved).
"""

BENCHES: dict[str, str] = {
    "collar": "simulator.collar_bench:run",
    "bridge": "lora_bridge.bench:bridge_figures",
    "bridge-cpu": "lora_bridge.cpu_bench:run",
    "sensing": "models.bench:sensing_bench",
    "fleet": "simulator.fleet:bench_fleet",
    "replay": "simulator.replay_bench:run",
    "rules": "lora_bridge.rules_bench:run",
    "durability": "lora_bridge.durability_bench:run",
    "models": "models.models_bench:run",
    "alerts": "tembo.twin:bench_alerts",
    "sim": "tembo.twin:bench_sim",
    "fuota": "simulator.fuota:bench",
    "firmware": "lora_bridge.updates.release:bundle_room",
    "dashboard": "ranger_dashboard.bench:run",
}
