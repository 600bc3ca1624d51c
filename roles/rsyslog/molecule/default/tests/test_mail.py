"""Mail: logmail-app's null client relays to the sink on logmail-mon, which keeps every
message in one Maildir and never relays. Messages carry unique subjects."""

from __future__ import annotations

import smtplib
import socket
import uuid
from pathlib import Path

import pytest
from hpdtest import ANSI, address, host, run_playbook, wait_for

SINK = "logmail-mon"
RELAY = "logmail-app"
MAILDIR = "/var/lib/mailsink/Maildir"
SCENARIO_DIR = Path(__file__).resolve().parents[1]


def subject(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def in_sink(subj: str) -> bool:
    return host(SINK).run(f"grep -rlF 'Subject: {subj}' {MAILDIR}/new {MAILDIR}/cur").rc == 0


def test_smtp_to_the_local_mta_lands_in_the_sink() -> None:
    subj = subject("smtplib")
    script = (
        "import smtplib; from email.message import EmailMessage; m = EmailMessage(); "
        f"m['From'] = 'app@example.com'; m['To'] = 'someone@example.org'; m['Subject'] = '{subj}'; "
        "m.set_content('hello'); s = smtplib.SMTP('127.0.0.1', 25, timeout=10); "
        "s.send_message(m); s.quit()"
    )
    host(RELAY).check_output(f'python3 -c "{script}"')
    assert wait_for(lambda: in_sink(subj), timeout=30)
    # Delivered on the sink (relay=local), never sent onwards.
    log = host(SINK).check_output("cat /var/log/mail.log")
    assert "orig_to=<someone@example.org>, relay=local" in log


def test_sendmail_lands_in_the_sink() -> None:
    subj = subject("sendmail")
    host(RELAY).check_output(
        "printf 'To: ops@elsewhere.example.net\\nFrom: cron@example.com\\n"
        f"Subject: {subj}\\n\\nbody\\n' | /usr/sbin/sendmail -t"
    )
    assert wait_for(lambda: in_sink(subj), timeout=30)
    mailbox = host(SINK).file(MAILDIR)
    assert mailbox.user == "mailsink" and mailbox.is_directory


def test_relay_is_a_loopback_only_null_client() -> None:
    relay = host(RELAY)
    listening = relay.check_output("ss -ltnH")
    assert "127.0.0.1:25" in listening
    assert f"{address(RELAY)}:25" not in listening and "0.0.0.0:25" not in listening
    assert relay.check_output("postconf -h mydestination") == ""
    assert relay.check_output("postconf -h relayhost") == f"[{address(SINK)}]:25"
    with pytest.raises(OSError):
        socket.create_connection((address(RELAY), 25), timeout=3).close()


def test_sink_listens_on_loopback_and_its_private_address_behind_the_firewall() -> None:
    sink = host(SINK)
    listening = sink.check_output("ss -ltnH")
    assert "127.0.0.1:25" in listening and f"{address(SINK)}:25" in listening
    assert "0.0.0.0:25" not in listening
    rules = sink.check_output("nft list chain inet filter services")
    assert "172.28.14.0/24" in rules and "tcp dport 25 accept" in rules


def test_sink_refuses_a_client_outside_its_networks() -> None:
    """This machine (172.28.14.1) passes the firewall but is not in the sink's networks
    (172.28.14.8/29 in the scenario): Postfix refuses it, for any recipient."""
    subj = subject("outsider")
    with smtplib.SMTP(address(SINK), 25, timeout=10) as smtp:
        smtp.ehlo("outsider.example")
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            smtp.sendmail(
                "x@example.com",
                ["mailsink@localhost", "victim@example.org"],
                f"Subject: {subj}\r\n\r\nno\r\n",
            )
    codes = {code for code, _ in refused.value.recipients.values()}
    assert codes == {554}
    assert not in_sink(subj)


def test_sink_never_relays() -> None:
    sink = host(SINK)
    assert sink.check_output("postconf -h default_transport").startswith("error:")
    assert sink.check_output("postconf -h relay_transport").startswith("error:")
    assert "Mail queue is empty" in sink.check_output("postqueue -p")


@pytest.fixture
def restore_relay():
    yield
    result = run_playbook(str(SCENARIO_DIR / "sasl.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert not host(RELAY).file("/etc/postfix/sasl_passwd").exists


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("-e", "postfix_relay_username=apps"), "postfix_relay_password: must be a string"),
        (
            (
                "-e",
                "postfix_relay_username=apps",
                "-e",
                "postfix_relay_password=changeme-changeme-1",
            ),
            "postfix_relay_password: must be a string",
        ),
        (("-e", "postfix_mode=smarthost"), "postfix_mode: must be relay or sink"),
    ],
    ids=["missing-password", "placeholder", "bad-mode"],
)
def test_role_refuses_bad_relay_settings(extra, message) -> None:
    before = host(RELAY).file("/etc/postfix/main.cf").md5sum
    result = run_playbook(str(SCENARIO_DIR / "sasl.yml"), *extra)
    output = ANSI.sub("", result.stdout + result.stderr)
    assert result.returncode != 0
    assert message in output
    assert "changed=0" in output
    assert host(RELAY).file("/etc/postfix/main.cf").md5sum == before


def test_sasl_credentials_are_a_root_only_map_and_tls_is_required(restore_relay) -> None:
    password = uuid.uuid4().hex
    result = run_playbook(
        str(SCENARIO_DIR / "sasl.yml"),
        "-e",
        "postfix_relay_username=apps",
        "-e",
        f"postfix_relay_password={password}",
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert password not in output
    relay = host(RELAY)
    for path in ("/etc/postfix/sasl_passwd", "/etc/postfix/sasl_passwd.db"):
        f = relay.file(path)
        assert f.exists and f.user == "root" and f.mode == 0o600, path
    key = f"[{address(SINK)}]:25"
    assert relay.check_output(f"postmap -q '{key}' hash:/etc/postfix/sasl_passwd") == (
        f"apps:{password}"
    )
    assert relay.check_output("postconf -h smtp_sasl_auth_enable") == "yes"
    assert relay.check_output("postconf -h smtp_tls_security_level") == "encrypt"
