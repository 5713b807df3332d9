"""``palhm boot-report``: send the boot report the config's ``boot-report``
key describes (see :mod:`palhm_core.notify.bootreport`)."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser(
        "boot-report",
        help="send the boot report of the config's boot-report key",
        description="Send the boot report the config's boot-report key describes: the host "
        "name, time zone, boot time, uptime and boot id, by mailx, sendmail, AWS SNS or on "
        "stdout. Run once a boot by palhm-boot-report.service. Exits 1 when it cannot be sent.",
    )
    p.set_defaults(func=cmd_boot_report)


def cmd_boot_report(args) -> int:
    from palhm_core.cli import load_config
    from palhm_core.errors import ConfigError
    from palhm_core.notify import NotifyError

    _, conf, _ = load_config(args)
    if conf.boot_report is None:
        raise ConfigError("no boot-report key: nothing to send", conf.files[0].path)
    try:
        conf.boot_report.send()
    except NotifyError as e:
        raise NotifyError(f"boot report via {conf.boot_report.notifier.describe()}: {e}") from None
    return 0
