"""What the System V facilities share: keys, ids and the /proc tables (private).

System V objects are found by a *key* (an int, often made by ftok(3)) and then
used through an *id* the kernel hands out. Key 0 is IPC_PRIVATE: creating with
it always makes a new object that no key can find again, so such an object is
opened by its id instead. Linux lists every object in /proc/sysvipc/<table>.
"""

from __future__ import annotations

from ._names import check_int, check_sysv_key

__all__ = ("IPC_PRIVATE", "check_id", "check_open_key", "read_table")

#: The key that always creates a new object, found again only by its id.
IPC_PRIVATE = 0


def check_open_key(key: object, argument: str = "key") -> int:
    """A key that can find an existing object: anything but IPC_PRIVATE."""
    checked = check_sysv_key(key, argument)
    if checked == IPC_PRIVATE:
        raise ValueError(
            f"{argument} IPC_PRIVATE (0) cannot find an existing object: open it by its id"
        )
    return checked


def check_id(value: object, argument: str = "id") -> int:
    """A System V object id (a non-negative int)."""
    checked = check_int(value, argument, minimum=0)
    if checked >= 2**31:
        raise ValueError(f"{argument} must be < 2**31, got {checked}")
    return checked


def read_table(table: str) -> list[dict[str, int]]:
    """The rows of /proc/sysvipc/<table> ("shm", "sem", "msg"), keyed by column name.

    ``perms`` is octal in the file and is returned as its value; the rest are
    decimal. An object removed while we read is simply not there.
    """
    try:
        with open(f"/proc/sysvipc/{table}") as lines:
            header = next(lines).split()
            rows = []
            for line in lines:
                fields = line.split()
                if len(fields) != len(header):
                    continue
                row = {}
                for column, text in zip(header, fields, strict=True):
                    row[column] = int(text, 8) if column == "perms" else int(text)
                rows.append(row)
            return rows
    except (FileNotFoundError, StopIteration):
        return []
