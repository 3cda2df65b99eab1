from __future__ import annotations

import pathlib

import pytest

from devices.config import ConfigError
from devices.config import DeviceConfig
from devices.config import from_mapping
from devices.config import from_spec
from devices.config import load_list
from devices.config import load_toml
from devices.drivers import SerialSettings

BASE = {"id": "ox1", "driver": "nonin-df8", "port": "/dev/serial/by-id/usb-FTDI-if00", "station": "room-1"}


def test_minimal_entry_keeps_driver_settings() -> None:
    device = from_mapping(BASE)
    assert device == DeviceConfig("ox1", "nonin-df8", "/dev/serial/by-id/usb-FTDI-if00", "room-1")
    assert device.serial_settings(SerialSettings(baudrate=19200, parity="E")) == SerialSettings(19200, 8, "E")


def test_overrides_replace_only_what_they_name() -> None:
    device = from_mapping({**BASE, "baudrate": 115200, "parity": "e", "stopbits": 2, "rtscts": True,
                           "serial_number": "FT4XYZ"})
    settings = device.serial_settings(SerialSettings(baudrate=9600, xonxoff=True))
    assert settings == SerialSettings(baudrate=115200, bytesize=8, parity="E", stopbits=2, rtscts=True,
                                      xonxoff=True)
    assert device.serial_number == "FT4XYZ"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"baud": 9600}, "device 'ox1': unknown key 'baud'"),
        ({"port": ""}, "device 'ox1': key 'port' must be a non-empty string"),
        ({"station": 3}, "device 'ox1': key 'station' must be a non-empty string"),
        ({"baudrate": "9600"}, "device 'ox1': key 'baudrate' must be a positive integer"),
        ({"baudrate": 0}, "device 'ox1': key 'baudrate' must be a positive integer"),
        ({"bytesize": 9}, "device 'ox1': key 'bytesize' must be one of 5, 6, 7, 8"),
        ({"parity": "X"}, "device 'ox1': key 'parity' must be one of E, M, N, O, S"),
        ({"stopbits": 3}, "device 'ox1': key 'stopbits' must be one of 1, 1.5, 2"),
        ({"stopbits": True}, "device 'ox1': key 'stopbits' must be one of 1, 1.5, 2"),
        ({"rtscts": "yes"}, "device 'ox1': key 'rtscts' must be true or false"),
    ],
)
def test_invalid_entries_name_the_key(change: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        from_mapping({**BASE, **change})
    assert str(info.value).startswith(message)


def test_df8_layout_is_a_decoder_option_of_the_df8_driver() -> None:
    assert from_mapping(BASE).decoder_options() == {}
    device = from_mapping({**BASE, "df8_layout": "extended-status"})
    assert device.decoder_options() == {"df8_layout": "extended-status"}


@pytest.mark.parametrize(("change", "message"), [
    ({"df8_layout": "9560"}, "device 'ox1': key 'df8_layout' must be one of onyx-9560, extended-status, got '9560'"),
    ({"df8_layout": 1}, "device 'ox1': key 'df8_layout' must be one of onyx-9560, extended-status, got 1"),
    ({"driver": "nonin-df2", "df8_layout": "onyx-9560"},
     "device 'ox1': key 'df8_layout' does not apply to driver 'nonin-df2'"),
])
def test_bad_df8_layout_names_the_key(change: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        from_mapping({**BASE, **change})
    assert str(info.value) == message


def test_missing_key_is_named() -> None:
    entry = {key: value for key, value in BASE.items() if key != "driver"}
    with pytest.raises(ConfigError, match=r"^device 'ox1': missing key 'driver'$"):
        from_mapping(entry)


def test_spec_keeps_colons_of_urls_in_the_port() -> None:
    device = from_spec("bp1:datex-as3:socket://127.0.0.1:4001:room-2")
    assert (device.id, device.driver, device.port, device.station) == (
        "bp1", "datex-as3", "socket://127.0.0.1:4001", "room-2")


@pytest.mark.parametrize("spec", ["ox1:nonin-df8:/dev/ttyUSB0", "ox1::/dev/ttyUSB0:room", "ox1:d:/dev/x:"])
def test_malformed_spec(spec: str) -> None:
    with pytest.raises(ConfigError, match="expected ID:DRIVER:PORT:STATION"):
        from_spec(spec)


def test_duplicate_ids_are_refused() -> None:
    with pytest.raises(ConfigError, match="device 'ox1': key 'id' is used by another device"):
        load_list([BASE, {**BASE, "port": "/dev/ttyUSB1"}])


def test_toml_devices_tables(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "frontdesk.toml"
    path.write_text(
        '[web]\nport = 8080\n\n'
        '[[devices]]\nid = "ox1"\ndriver = "nonin-df8"\nport = "/dev/ttyUSB0"\nstation = "room-1"\n\n'
        '[[devices]]\nid = "temp1"\ndriver = "suretemp"\nport = "loop://"\nstation = "room-1"\n'
        'baudrate = 19200\n'
    )
    devices = load_toml(str(path))
    assert [device.id for device in devices] == ["ox1", "temp1"]
    assert devices[1].baudrate == 19200


def test_toml_errors_are_one_line(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[[devices]]\nid = \n")
    with pytest.raises(ConfigError, match="broken.toml"):
        load_toml(str(path))
    with pytest.raises(ConfigError, match="cannot read config file .*missing.toml: No such file"):
        load_toml(str(tmp_path / "missing.toml"))
