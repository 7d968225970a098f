"""The adapter's engine inside Apache Spark (``pip install 'fhir-adapter[spark]'``): ``screen_dataframe`` and
``response_dataframe`` read Bulk Data NDJSON on any path Spark reads and return one row a patient, with the same
result lines as the command line. DataFrame API only (no RDDs), so it runs on Databricks shared and serverless
compute; the per-patient work runs in Python workers with the command line's own code."""

from fhir_adapter.spark.jobs import response_dataframe, screen_dataframe

__all__ = ["response_dataframe", "screen_dataframe"]
