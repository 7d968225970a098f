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


def _at(text: str) -> Any:
    """1-based position of ``text`` in the line (0: absent)."""
    from pyspark.sql import functions as F

    return F.locate(text, F.col("value"))


def _locate_from(text: str, start: Any) -> Any:
    """1-based position of ``text`` in the line from the position ``start`` (a column or an int; 0: absent)."""
    from pyspark.sql import Column
    from pyspark.sql import functions as F

    return F.call_function("locate", F.lit(text), F.col("value"), start if isinstance(start, Column) else F.lit(start))


def classify(df: Any, latest: str | None) -> Any:
    """``df`` with the columns the module text lists (``latest``: the prefilter's latest first-read date, None for
    no prefilter): ``finish(route(dated(typed(df), latest)))``.

    Each search of the raw text runs at most once a line, on the lines that need it, each in its own projection
    (Spark keeps a projection whose result is used more than once, rather than copying its expression): a whole-line
    search costs about as much as reading the line. Searches for a word that is usually absent (``"contained"``,
    ``"component"``) first ask the cheaper ``contains`` of a shorter string that every match holds. The main pass
    (``jobs.grouped``) drops the lines the prefilter skips before ``route``, so it never looks for their patient."""
    return finish(route(dated(typed(df), latest)))


def typed(df: Any) -> Any:
    """Adds ``_type`` (the resource type of a compact line: a short search from its head) and ``_cont`` (where
    ``"contained"`` is, 0: absent)."""
    from pyspark.sql import functions as F

    value, col = F.col("value"), F.col
    head = '{"resourceType":"'
    first = len(head) + 1
    base = list(df.columns)
    df = df.select(*base, F.when(value.startswith(head), _locate_from('"', first)).alias("_e"),
                   F.when(value.contains('ntained"'), _at('"contained"')).otherwise(F.lit(0)).alias("_cont"))
    rtype = F.when((col("_e") > 0) & (col("_e") <= 64), F.substring(value, first, col("_e") - first)) \
        .otherwise(F.lit(None).cast("string"))
    return df.select(*base, "_cont", rtype.alias("_type"))


def dated(df: Any, latest: str | None) -> Any:
    """Adds the look-back prefilter's ``codings`` and ``day`` (``ObservationPrefilter.skips``), null on the lines
    it cannot skip (all of them when ``latest`` is None)."""
    from pyspark.sql import functions as F

    value, col = F.col("value"), F.col
    if latest is None:
        return df.select(*df.columns, F.lit(None).cast("string").alias("codings"),
                         F.lit(None).cast("string").alias("day"))
    base = list(df.columns)
    df = df.select(*base, F.when(value.startswith(PREFIX.decode()), _at('"effectiveDateTime":"')).alias("_d"))
    day = F.substring(value, col("_d") + 21, 10)
    ok = ((col("_d") > 0) & (day < F.lit(latest)) & (F.substring(day, 5, 1) == "-")
          & (F.substring(day, 8, 1) == "-") & (col("_cont") == 0))
    df = df.select(*base, F.when(ok, day).alias("_day"), F.when(ok, _at('"code":{"coding":[')).alias("_c"))
    c = col("_c")
    df = df.select(*base, "_day", "_c", F.when(c > 0, _locate_from("}]", c)).alias("_ce"),
                   F.when((c > 0) & value.contains('omponent"'), _at('"component"')).otherwise(F.lit(0))
                   .alias("_comp"))
    codings = F.when(col("_ce") > 0, F.substring(value, c + 18, col("_ce") - c - 17)).otherwise(F.lit(""))
    candidate = (c > 0) & ~((col("_comp") > 0) & (col("_comp") + 11 <= c))
    return df.select(*base, F.when(candidate, codings).alias("codings"), F.when(candidate, col("_day")).alias("day"))


def route(df: Any) -> Any:
    """Adds ``pid`` (the command line's fast path, and plain Patient lines) and ``quiet``."""
    from pyspark.sql import functions as F

    r = rules()
    value, col = F.col("value"), F.col
    by_field: dict[str, list[str]] = {}
    for t, fields in r.clinical.items():
        by_field.setdefault(fields[0], []).append(t)
    base = list(df.columns)
    kat, klen = None, None  # where the patient reference starts, on the clinical types only
    for fld, types in sorted(by_field.items()):
        key = f'"{fld}":{{"reference":"'
        is_t = col("_type").isin(types)
        kat = F.when(is_t, _at(key)) if kat is None else kat.when(is_t, _at(key))
        klen = F.when(is_t, F.lit(len(key))) if klen is None else klen.when(is_t, F.lit(len(key)))
    df = df.select(*base, kat.alias("_kat"), klen.alias("_klen"))
    start = col("_kat") + col("_klen")
    df = df.select(*base, "_kat", F.when(col("_kat") > 0, start).alias("_ks"),
                   F.when(col("_kat") > 0, _locate_from('"', start)).alias("_kq"))
    ref = F.when(col("_kq") > 0, F.substring(value, col("_ks"), col("_kq") - col("_ks")))
    df = df.select(*base, "_kat", ref.alias("_ref"))
    ref = col("_ref")
    ok = (ref.startswith("Patient/") & (F.octet_length(ref) > 8) & (F.octet_length(ref) <= 72)
          & ~F.substring(ref, 9, 100).contains("/") & ~ref.contains("\\")
          & ~((col("_cont") > 0) & (col("_cont") < col("_kat"))))
    patient_id = F.when(col("_type") == "Patient",  # the expression only on Patient lines
                        F.regexp_extract(value, r'^\{"resourceType":"Patient","id":"([A-Za-z0-9\-.]{1,64})"', 1))
    plain_patient = (col("_type") == "Patient") & (patient_id != "") & (col("_cont") == 0) \
        & ~value.contains('"link"')
    pid = F.when(ok, F.substring(ref, 9, 100)).when(plain_patient, patient_id)
    unused = sorted(r.r4_types - set(r.clinical) - set(r.shared) - {"Patient"})
    quiet = F.when(col("_type").isin(unused) & (col("_cont") == 0),
                   F.concat(col("_type"), F.lit(" not used by any criterion")))
    return df.select(*base, pid.alias("pid"), quiet.alias("quiet"))


def finish(df: Any, unusual: bool = True) -> Any:
    """Drops the working columns; adds ``unusual`` (when asked); passes ``pid`` through a non-deterministic (always
    true) test, so that Spark pushes no filter below this projection: a filter on ``pid`` then does not copy its
    expression into a second evaluation."""
    from pyspark.sql import functions as F

    blank = F.regexp_like(F.col("value"), F.lit(r"^[ \t\r\n\x0b\x0c]*$"))
    undecided = F.col("pid").isNull() & F.col("quiet").isNull()
    barrier = F.when(F.spark_partition_id() >= 0, F.col("pid")).alias("pid")
    cols = [barrier if c == "pid" else c for c in df.columns if c not in ("_type", "_cont")]
    if unusual:
        cols.append(F.when(undecided, ~blank).otherwise(F.lit(False)).alias("unusual"))
    return df.select(*cols)
