"""The raw NDJSON lines as a Spark DataFrame, and what the JVM can tell about each line without Python.

``read_lines`` gives one row per line with the file it came from (``file``: path, ``name``: file name), the
split of the file that holds it (``block``) and a row id (``mid``, ``monotonically_increasing_id``: consecutive
within a split, so a line's number is its split's first line plus ``mid`` minus the split's first ``mid``).

``classify`` adds, as column expressions on the raw text (no parsing, nothing sent to Python):

- ``pid``: the patient of the lines the command line routes on its fast path (``partition._Router.route``: a
  compact resource whose ``subject``/``patient`` reference is ``Patient/id``, no ``contained`` before it), and of
  a compact Patient line that names its id first and has no ``link``;
- ``quiet``: the kind of a line dropped unread because no criterion uses its type;
- the look-back prefilter's fields (``prefilter.ObservationPrefilter.skips``): ``codings`` (the raw coding list,
  for a line the prefilter may skip) and ``day`` (its ``effectiveDateTime`` date);
- ``unusual``: a line none of that decides (a shared Medication, a line that cannot be read, a merged Patient,
  a reference written another way): routed on the driver by the command line's own router (``plan.py``).
"""

from __future__ import annotations

from typing import Any

from fhir_adapter.record.resource_types import rules
from fhir_adapter.sources.prefilter import PREFIX
from fhir_adapter.sources.reading import TOO_LONG

GLOB = "*.{ndjson,ndjson.gz,jsonl,jsonl.gz}"  # the names ``sources.ndjson.ndjson_files`` reads
_HEAD = 64 << 10  # what is kept of a line over the size limit (``reading._HEAD``)


def read_lines(spark: Any, source: Any, limit: int) -> Any:
    """The lines of ``source`` (a folder or file path Spark reads, a list of them, or a DataFrame with a ``value``
    column of raw lines and optionally ``file`` and ``line``) as rows (file, name, block, mid, value)."""
    from pyspark.sql import DataFrame
    from pyspark.sql import functions as F

    if isinstance(source, DataFrame):
        if "value" not in source.columns:
            raise ValueError("a DataFrame source needs a 'value' column: one raw NDJSON line a row")
        file = F.col("file").cast("string") if "file" in source.columns else F.lit("lines")
        name = F.regexp_extract(file, r"([^/]*)$", 1)
        if "line" in source.columns:  # numbered by the caller: one block a file, mid the line number
            df = source.select(file.alias("file"), name.alias("name"), F.lit(0).cast("long").alias("block"),
                               F.col("line").cast("long").alias("mid"), F.col("value").cast("string").alias("value"))
        else:  # numbered in the order Spark holds them: each partition a block
            df = source.select(file.alias("file"), name.alias("name"),
                               F.spark_partition_id().cast("long").alias("block"),
                               F.monotonically_increasing_id().alias("mid"),
                               F.col("value").cast("string").alias("value"))
    else:
        many = not isinstance(source, str) and hasattr(source, "__iter__")
        paths = [str(p) for p in source] if many else [str(source)]
        raw = (spark.read.option("recursiveFileLookup", "true").option("pathGlobFilter", GLOB)
               .option("lineSep", "\n").text(paths))
        df = raw.select(F.col("_metadata.file_path").alias("file"), F.col("_metadata.file_name").alias("name"),
                        F.col("_metadata.file_block_start").alias("block"),
                        F.monotonically_increasing_id().alias("mid"), F.col("value"))
    size = F.octet_length("value")
    marker = TOO_LONG.decode("latin-1")
    too_long = F.concat(F.lit(marker), size.cast("string"), F.lit("\x00"), F.substring("value", 1, _HEAD))
    return df.withColumn("value", F.when(size > limit, too_long).otherwise(F.col("value")))


def _find(text: str, start: str | None = None) -> Any:
    """1-based position of ``text`` in the line (0: absent), from the SQL position ``start`` when given."""
    from pyspark.sql import functions as F

    assert "'" not in text and "\\" not in text
    return F.expr(f"locate('{text}', value, {start})" if start is not None else f"locate('{text}', value)")


def classify(df: Any, latest: str | None) -> Any:
    """``df`` with the columns the module text lists (``latest``: the prefilter's latest first-read date, None for
    no prefilter)."""
    from pyspark.sql import functions as F

    r = rules()
    value = F.col("value")
    head = '{"resourceType":"'
    compact = value.startswith(head)
    end = _find('"', str(len(head) + 1))
    first = len(head) + 1
    rtype = F.when(compact & (end > 0) & (end <= 64),
                   F.expr(f"substring(value, {first}, locate('\"', value, {first}) - {first})"))
    contained = _find('"contained"')
    by_field: dict[str, list[str]] = {}
    for t, fields in r.clinical.items():
        by_field.setdefault(fields[0], []).append(t)
    pid = None
    for fld, types in sorted(by_field.items()):
        key = f'"{fld}":{{"reference":"'
        at = _find(key)
        start = f"locate('{key}', value) + {len(key)}"
        ref = F.expr(f"substring(value, locate('{key}', value) + {len(key)}, "
                     f"locate('\"', value, locate('{key}', value) + {len(key)}) - locate('{key}', value) - {len(key)})")
        ok = (rtype.isin(types) & (at > 0) & ~((contained > 0) & (contained < at)) & (_find('"', start) > 0)
              & ref.startswith("Patient/") & (F.octet_length(ref) > 8) & (F.octet_length(ref) <= 72)
              & ~F.substring(ref, 9, 100).contains("/") & ~ref.contains("\\"))
        pid = F.when(ok, F.substring(ref, 9, 100)) if pid is None else pid.when(ok, F.substring(ref, 9, 100))
    patient_id = F.when(rtype == "Patient",  # the expression only on Patient lines
                        F.regexp_extract(value, r'^\{"resourceType":"Patient","id":"([A-Za-z0-9\-.]{1,64})"', 1))
    plain_patient = (rtype == "Patient") & (patient_id != "") & (contained == 0) & (_find('"link"') == 0)
    pid = pid.when(plain_patient, patient_id) if pid is not None else F.when(plain_patient, patient_id)
    unused = sorted(r.r4_types - set(r.clinical) - set(r.shared) - {"Patient"})
    quiet = F.when(rtype.isin(unused) & (contained == 0), F.concat(rtype, F.lit(" not used by any criterion")))
    blank = F.regexp_like(value, F.lit(r"^[ \t\r\n\x0b\x0c]*$"))
    df = df.withColumn("pid", pid).withColumn("quiet", quiet)
    if latest is None:
        df = df.withColumn("codings", F.lit(None).cast("string")).withColumn("day", F.lit(None).cast("string"))
    else:
        d = _find('"effectiveDateTime":"')
        day = F.expr("substring(value, locate('\"effectiveDateTime\":\"', value) + 21, 10)")
        c = _find('"code":{"coding":[')
        e = F.expr("locate('}]', value, locate('\"code\":{\"coding\":[', value))")
        codings = F.when(e > 0, F.expr("substring(value, locate('\"code\":{\"coding\":[', value) + 18, "
                                       "locate('}]', value, locate('\"code\":{\"coding\":[', value)) - "
                                       "locate('\"code\":{\"coding\":[', value) - 17)")).otherwise(F.lit(""))
        comp = _find('"component"')
        candidate = (value.startswith(PREFIX.decode()) & (d > 0) & (day < F.lit(latest))
                     & (F.substring(day, 5, 1) == "-") & (F.substring(day, 8, 1) == "-") & (c > 0)
                     & (contained == 0) & ~((comp > 0) & (comp + 11 <= c)))
        df = df.withColumn("codings", F.when(candidate, codings)).withColumn("day", F.when(candidate, day))
    undecided = F.col("pid").isNull() & F.col("quiet").isNull()
    return df.withColumn("unusual", F.when(undecided, ~blank).otherwise(F.lit(False)))
