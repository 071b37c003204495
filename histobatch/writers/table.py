"""The per-nucleus table (Parquet, written in row groups; CSV on request)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: Column order of ``nuclei.parquet`` (a public contract; add columns at the end).
COLUMNS = [
    "id",
    "x",
    "y",
    "x_um",
    "y_um",
    "area_um2",
    "perimeter_um",
    "eccentricity",
    "solidity",
    "type",
    "type_id",
    "type_prob",
]


def table_schema():
    """The pyarrow schema of ``nuclei.parquet``."""
    import pyarrow as pa

    return pa.schema(
        [
            ("id", pa.uint32()),
            ("x", pa.float64()),
            ("y", pa.float64()),
            ("x_um", pa.float64()),
            ("y_um", pa.float64()),
            ("area_um2", pa.float32()),
            ("perimeter_um", pa.float32()),
            ("eccentricity", pa.float32()),
            ("solidity", pa.float32()),
            ("type", pa.dictionary(pa.int8(), pa.string())),
            ("type_id", pa.uint8()),
            ("type_prob", pa.float32()),
        ]
    )


class NucleusTableWriter:
    """Stream nuclei to Parquet one batch (row group) at a time.

    Parameters
    ----------
    path
        Output ``.parquet`` file.
    class_names
        Type names by id (for the ``type`` column).
    """

    def __init__(self, path: str | Path, class_names: list[str]) -> None:
        import pyarrow.parquet as pq

        self.path = Path(path)
        self.class_names = list(class_names)
        self.schema = table_schema()
        self._writer = pq.ParquetWriter(str(self.path), self.schema, compression="zstd")
        self.rows = 0

    def write(self, columns: dict[str, np.ndarray]) -> None:
        """Append nuclei; ``columns`` holds every name of :data:`COLUMNS` except ``type``."""
        import pyarrow as pa

        n = len(columns["id"])
        if n == 0:
            return
        type_ids = np.asarray(columns["type_id"], np.int64)
        types = pa.DictionaryArray.from_arrays(
            pa.array(type_ids.astype(np.int8)), pa.array(self.class_names)
        )
        arrays = []
        for field in self.schema:
            if field.name == "type":
                arrays.append(types)
            else:
                arrays.append(pa.array(np.asarray(columns[field.name]), type=field.type))
        self._writer.write_table(pa.Table.from_arrays(arrays, schema=self.schema))
        self.rows += n

    def close(self) -> None:
        """Finish the file (an empty table is still a valid Parquet file with the schema)."""
        self._writer.close()


def parquet_to_csv(parquet: str | Path, csv: str | Path) -> None:
    """Convert a nucleus table to CSV, one row group at a time."""
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    source = pq.ParquetFile(str(parquet))
    schema = source.schema_arrow
    type_index = schema.get_field_index("type")
    csv_schema = schema.set(type_index, pa.field("type", pa.string()))
    with pcsv.CSVWriter(str(csv), csv_schema) as writer:
        for group in range(source.num_row_groups):
            table = source.read_row_group(group)
            table = table.set_column(type_index, "type", table.column("type").cast(pa.string()))
            writer.write_table(table)
