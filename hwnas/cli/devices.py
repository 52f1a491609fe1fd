"""``hwnas devices list|check``: the device specs and whether their runtimes are here."""

from __future__ import annotations

from rich.table import Table

from hwnas.cli.common import JsonFlag, SpecArg, console, esc, group, print_json

devices_app = group("devices", "List device specs and check their runtimes.")


@devices_app.command("list")
def devices_list() -> None:
    """The shipped device specs, their backends and whether each can run here."""
    from hwnas.devices import DeviceSpec, make_backend, shipped_specs

    table = Table("spec", "name", "backend", "here")
    for name in shipped_specs():
        spec = DeviceSpec.from_toml(name)
        reason = make_backend(spec).unavailable_reason()
        table.add_row(esc(name), esc(spec.name), spec.backend, "ready" if reason is None else f"[yellow]{esc(reason)}[/]")
    console.print(table)


@devices_app.command("check")
def devices_check(spec: SpecArg, as_json: JsonFlag = False) -> None:
    """Say whether the device's runtime is here; print its fingerprint (exit 2 when it is not)."""
    from hwnas.devices import DeviceSpec, make_backend

    device = DeviceSpec.from_toml(spec)
    backend = make_backend(device)
    backend.require_available()
    fingerprint = backend.fingerprint()
    if as_json:
        print_json({"spec": device.to_json(), "fingerprint": fingerprint})
        return
    console.print(f"[bold]{esc(device.name)}[/] ({device.backend}) is ready")
    for key, value in fingerprint.items():
        console.print(f"  {key}: {esc(value)}")
