"""The throwaway servers the tests and the benchmarks start (`tembo.local_services`): running while in use,
gone with their folder after, so a developer's machine keeps no broker and no data of a run."""

from __future__ import annotations

import socket

import pytest

from tembo.local_services import MosquittoServer


@pytest.mark.mqtt
def test_a_throwaway_broker_answers_while_in_use_and_leaves_no_process_nor_folder_behind(tmp_path):
    folder = tmp_path / "mosquitto"
    with MosquittoServer.started(folder) as broker:
        assert (folder / "mosquitto.conf").exists() and (folder / "passwords").exists()
        socket.create_connection((broker.host, broker.port), timeout=2).close()
        process, address = broker.process, (broker.host, broker.port)

    assert process is not None and process.poll() is not None, "the broker still runs"
    assert broker.process is None
    assert not folder.exists(), "the broker's folder (its password file, its sessions) was left behind"
    with pytest.raises(OSError):
        socket.create_connection(address, timeout=1).close()
