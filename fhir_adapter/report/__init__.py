"""``fhir-adapter report``: what research IT hands the investigator, from ``screen`` or ``response`` lines.

``build`` streams the lines into counts (``screening``, ``responses``, ``compare``); ``build.shareable``
hides small counts (``suppress``); ``render`` writes HTML (one self-contained file), Markdown or JSON from
Jinja2 templates in ``templates/``, and the CSV rows.
"""
