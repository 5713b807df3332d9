"""localfs's ``dmode`` and ``fmode`` parameters."""

from __future__ import annotations

import logging


def parse_mode(value, place) -> int:
    """A file mode written as an octal string (``"750"``), for files and
    directories PALHM creates. Setuid, setgid and sticky bits are refused (a
    backup has no use for them, and a setuid copy is a way into the host); a
    mode that lets every user write is accepted with a warning."""
    text = str(value).strip() if isinstance(value, str) else None
    if not text or any(c not in "01234567" for c in text) or int(text, 8) > 0o7777:
        raise place.error(f'expected an octal mode such as "750", got {value!r}')
    mode = int(text, 8)
    if mode & 0o7000:
        raise place.error(
            f'"{text}" sets the setuid, setgid or sticky bit; only permission bits '
            'are allowed (such as "750")'
        )
    if mode & 0o002:
        logging.getLogger("palhm").warning(
            "%s: mode %s lets every user write what PALHM stores", place, text
        )
    return mode
