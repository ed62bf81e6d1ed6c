"""Row batches for DuckDB inserts, with or without pyarrow.

The call-log writer hands DuckDB one table per batch. With pyarrow installed (the ``dev``
extra, or any environment that has it) that table is Arrow, as before; in the core install
it is a pandas DataFrame built from typed pandas/numpy columns, which DuckDB scans natively.
Both builders refuse the same values (a string in a token count, an int past INTEGER, a
non-string in a text column), raising `TypeError`, `ValueError` or `OverflowError`, so the
writer's bisecting of bad rows works the same on both paths.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from aigw_lab.store.schema import arrow_schema

__all__ = ["ColumnBatches", "arrow_installed", "rows_table"]

_INT_RANGE = {"INTEGER": (-(2**31), 2**31 - 1), "BIGINT": (-(2**63), 2**63 - 1)}


def arrow_installed() -> bool:
    """Whether pyarrow can be imported (it is not a core dependency)."""
    try:
        # lazy: pyarrow loads in ~0.1-0.2 s; only building or reading a batch needs it
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True


class ColumnBatches:
    """Builds insert tables for a fixed set of columns (name -> DuckDB type).

    ``arrow`` picks the builder: True for pyarrow, False for pandas, None for pyarrow when
    it is installed. `convert` turns one column's values into an array (raising on a value
    the column cannot hold), `table` assembles arrays, `num_rows` and `slice` read a table.
    """

    def __init__(self, columns: dict[str, str], *, arrow: bool | None = None) -> None:
        self.arrow = arrow_installed() if arrow is None else arrow
        self.names = list(columns)
        #: Whether `table` can mark JSON columns as Arrow's ``arrow.json`` type (``json=True``),
        #: which DuckDB takes as JSON without parsing: pyarrow >= 19 only.
        self.json_typed = False
        if self.arrow:
            self._init_arrow(columns)
        else:
            self.converters: list[Callable[[list[Any]], Any]] = [
                _pandas_converter(sql) for sql in columns.values()
            ]

    def _init_arrow(self, columns: dict[str, str]) -> None:
        # lazy: pyarrow loads in ~0.1-0.2 s; only building or reading a batch needs it
        import pyarrow as pa

        self._schema = arrow_schema(columns)
        self.converters = [_arrow_converter(field.type) for field in self._schema]
        self.errors: tuple[type[BaseException], ...] = (pa.ArrowException,)
        json_type = getattr(pa, "json_", None)  # pyarrow >= 19
        self._json_columns = [i for i, sql in enumerate(columns.values()) if sql == "JSON"]
        if json_type is not None:
            self.json_typed = True
            self._json_type = json_type()
            schema = self._schema
            for index in self._json_columns:
                schema = schema.set(index, schema.field(index).with_type(self._json_type))
            self._json_schema = schema

    def convert(self, index: int, values: list[Any]) -> Any:
        """Column ``index``'s values as an array; raises if one cannot be stored."""
        return self.converters[index](values)

    def table(self, arrays: Sequence[Any], *, json: bool = False) -> Any:
        """The arrays, one per column in order, as one insertable table. ``json`` (honoured
        when `json_typed`): JSON columns are typed ``arrow.json``, so DuckDB stores their
        text without parsing it; only for text known to be valid JSON."""
        if self.arrow:
            # lazy: pyarrow loads in ~0.1-0.2 s; only building or reading a batch needs it
            import pyarrow as pa

            if json and self.json_typed:
                arrays = list(arrays)
                for index in self._json_columns:  # a view of the same buffers, no copy
                    arrays[index] = pa.ExtensionArray.from_storage(self._json_type, arrays[index])
                return pa.Table.from_arrays(arrays, schema=self._json_schema)
            return pa.Table.from_arrays(list(arrays), schema=self._schema)
        # lazy: pandas (with numpy and pyarrow) loads in ~0.4 s; only building a frame needs it
        import pandas as pd

        # Explicit Series dtypes: left to infer, pandas would turn object columns of text
        # into its string dtype (through pyarrow, when installed), a copy DuckDB scans slower.
        return pd.DataFrame(
            {
                name: pd.Series(array, dtype=getattr(array, "dtype", object), copy=False)
                for name, array in zip(self.names, arrays, strict=True)
            },
            copy=False,
        )

    def num_rows(self, table: Any) -> int:
        return table.num_rows if self.arrow else len(table)

    def slice(self, table: Any, start: int, stop: int) -> Any:
        """Rows ``start`` to ``stop`` of ``table`` (no copy on either path)."""
        if self.arrow:
            return table.slice(start, stop - start)
        return table.iloc[start:stop]


def rows_table(rows: Sequence[dict[str, Any]] | Any) -> Any:
    """A list of dicts (or an Arrow table) as a table DuckDB can scan: Arrow when pyarrow is
    installed, else a DataFrame of object columns (DuckDB infers each column's type, and
    the INSERT casts it to the table's). Columns a row leaves out are NULL."""
    if arrow_installed():
        # lazy: pyarrow loads in ~0.1-0.2 s; only building or reading a batch needs it
        import pyarrow as pa

        return rows if isinstance(rows, pa.Table) else pa.Table.from_pylist(list(rows))
    # lazy: pandas (with numpy and pyarrow) loads in ~0.4 s; only building a frame needs it
    import pandas as pd

    rows = list(rows)
    names: dict[str, None] = {}
    for row in rows:
        names.update(dict.fromkeys(row))
    return pd.DataFrame(
        {name: pd.Series([row.get(name) for row in rows], dtype=object) for name in names},
        index=pd.RangeIndex(len(rows)),
    )


def _arrow_converter(kind: Any) -> Callable[[list[Any]], Any]:
    # lazy: pyarrow loads in ~0.1-0.2 s; only building or reading a batch needs it
    import pyarrow as pa

    def convert(values: list[Any]) -> Any:
        return pa.array(values, type=kind)

    return convert


# --- the pandas path: each converter checks types the way Arrow does, then builds the
# column with one vectorised call (types are checked on the set of types, not per value).


def _pandas_converter(sql: str) -> Callable[[list[Any]], Any]:
    if sql in ("VARCHAR", "JSON"):
        return _strings
    if sql in _INT_RANGE:
        low, high = _INT_RANGE[sql]
        dtype = "Int32" if sql == "INTEGER" else "Int64"
        return lambda values: _ints(values, low, high, dtype)
    if sql == "DOUBLE":
        return _floats
    if sql == "BOOLEAN":
        return _bools
    if sql == "TIMESTAMPTZ":
        return _timestamps
    if sql == "VARCHAR[]":
        return _string_lists
    raise ValueError(f"no pandas column for DuckDB type {sql}")


def _refuse(values: list[Any], allowed: tuple[type, ...], what: str) -> None:
    kinds = set(map(type, values))
    kinds.discard(type(None))
    for kind in kinds:
        if not issubclass(kind, allowed) or (kind is bool and bool not in allowed):
            raise TypeError(f"expected {what}, got {kind.__name__}")


def _object_array(values: list[Any]) -> Any:
    # lazy: numpy loads in ~0.1 s; `import aigw_lab` and the CLI start without it
    import numpy as np

    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


def _check_utf8(values: list[Any]) -> None:
    # A lone surrogate cannot be stored (Arrow refuses it while converting; DuckDB would
    # fail the whole insert): one encode of the column finds it.
    "".join([v for v in values if v is not None]).encode("utf-8")


def _strings(values: list[Any]) -> Any:
    _refuse(values, (str,), "str")
    _check_utf8(values)
    return _object_array(values)


def _masked(values: list[Any], fill: Any, dtype: Any) -> tuple[Any, Any]:
    """The values as a numpy array of ``dtype`` (None replaced by ``fill``) and the mask
    of Nones, in C loops: ``count`` and numpy's element-wise comparison, not per-value
    Python."""
    # lazy: numpy loads in ~0.1 s; `import aigw_lab` and the CLI start without it
    import numpy as np

    nones = values.count(None)
    if nones == 0:
        return np.array(values, dtype=dtype), np.zeros(len(values), dtype=bool)
    if nones == len(values):
        return np.full(len(values), fill, dtype=dtype), np.ones(len(values), dtype=bool)
    array = _object_array(values)
    mask = np.equal(array, None)
    array[mask] = fill
    return array.astype(dtype), mask


def _ints(values: list[Any], low: int, high: int, dtype: str) -> Any:
    # lazy: numpy and pandas load in ~0.4 s; only building a frame needs them
    import numpy as np
    import pandas as pd

    _refuse(values, (int,), "int")
    data, mask = _masked(values, 0, np.int64)  # OverflowError past 64 bits
    if len(data) and (data.min() < low or data.max() > high):
        raise OverflowError(f"integer out of range for {dtype}")
    return pd.arrays.IntegerArray(data.astype(dtype.lower()), mask)


def _floats(values: list[Any]) -> Any:
    # lazy: numpy and pandas load in ~0.4 s; only building a frame needs them
    import numpy as np
    import pandas as pd

    _refuse(values, (int, float, bool), "float")  # Arrow takes a bool as 1.0 too
    data, mask = _masked(values, 0.0, np.float64)
    if np.isnan(data).any():
        # DuckDB reads NaN in any pandas column as NULL; Arrow keeps it. Text keeps it too
        # (the insert casts 'nan' to DOUBLE NaN; repr round-trips every float exactly).
        return _object_array([None if v is None else repr(float(v)) for v in values])
    return pd.arrays.FloatingArray(data, mask)


def _bools(values: list[Any]) -> Any:
    # lazy: pandas (with numpy and pyarrow) loads in ~0.4 s; only building a frame needs it
    import pandas as pd

    _refuse(values, (bool,), "bool")
    return pd.arrays.BooleanArray(*_masked(values, False, bool))


def _timestamps(values: list[Any]) -> Any:
    # lazy: pandas (with numpy and pyarrow) loads in ~0.4 s; only building a frame needs it
    import pandas as pd

    _refuse(values, (datetime,), "datetime")
    # Arrow reads a naive datetime as UTC; so does this.
    aware = [v if v is None or v.tzinfo is not None else v.replace(tzinfo=UTC) for v in values]
    return pd.array(aware, dtype="datetime64[us, UTC]")


def _string_lists(values: list[Any]) -> Any:
    _refuse(values, (list, tuple), "list of str")
    for value in values:
        if value is not None:
            _refuse(list(value), (str,), "str")
            _check_utf8(list(value))
    return _object_array([None if v is None else list(v) for v in values])
