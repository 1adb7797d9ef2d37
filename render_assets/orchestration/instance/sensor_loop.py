"""How often Dagster's sensor daemon looks for sensors due for a tick.

The daemon starts ticks from a loop that runs every 5 s, a module constant
(`dagster._daemon.sensor.MIN_INTERVAL_LOOP_TIME`) with no setting of its own. A sensor's
`minimum_interval_seconds` can only lengthen that. For the render sensor the loop is the latency
floor: an idle tick waits on BullMQ and claims a job as it arrives, but once a tick has claimed and
returned, a job enqueued after it waits for the loop to start the next tick (up to 5 s). A shorter
loop costs one read of the sensors' states per turn (the daemon checks each sensor's own interval,
so no other sensor ticks more often).

The constant is private: `set_sensor_loop` fails loudly if a Dagster upgrade removes it, and a
test pins it (render_assets_tests/test_run_coordinator.py).
"""

from __future__ import annotations

from dagster._daemon import sensor as sensor_daemon

DAGSTER_SENSOR_LOOP_S = 5.0  # Dagster's own value


def set_sensor_loop(seconds: float) -> None:
    if not hasattr(sensor_daemon, "MIN_INTERVAL_LOOP_TIME"):
        raise RuntimeError(
            "dagster._daemon.sensor.MIN_INTERVAL_LOOP_TIME is gone (a Dagster upgrade): "
            "remove sensor_loop_seconds from the instance file"
        )
    if seconds <= 0:
        raise ValueError(f"sensor_loop_seconds must be positive, not {seconds}")
    sensor_daemon.MIN_INTERVAL_LOOP_TIME = seconds  # type: ignore[assignment]  # read at every turn


def sensor_loop() -> float:
    return float(sensor_daemon.MIN_INTERVAL_LOOP_TIME)
