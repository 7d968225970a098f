"""Treatment response (issue 5): the 2016 ACR/EULAR Total Improvement Score, inactive disease, endpoint changes,
safety signals and visit courses, for NCT04966884 (tofacitinib) and NCT07377058 (PROMIS-MDA5).

``tis`` scores numbers (pure); ``measures`` extracts the six core set measures from a patient record;
``inactive``, ``endpoints``, ``safety`` and ``course`` derive the rest; ``respond`` puts one patient together.
"""
