"""What a resource field gets from the environment: the variable itself (an `EnvVar`) when it is
set, so its value stays out of the UI and run config, else the embedded default."""

from dagster import EnvVar

from render_assets.config import Variable


def env(variable: Variable) -> str | None:
    return EnvVar(variable.name) if variable.is_set() else variable.default


def required_env(variable: Variable) -> str:
    value = env(variable)
    if value is None:
        raise ValueError(f"{variable.name} must be set")
    return value
