/* The Observation look-back prefilter of pass 1 (prefilter.py), over a whole buffer of NDJSON lines.
 *
 * kept(buf, prefix, latest, cache) splits ``buf`` on "\n" like ``bytes.split`` and returns
 * ``(kept, count)``: ``count`` is the number of lines, ``kept`` a list of ``(index, line, undecided)`` for
 * every line it does not skip. It skips a line only when ``ObservationPrefilter.skips`` would, using only
 * decisions already in ``cache`` (raw coding list -> first date read, or None); a line whose coding list is
 * not in the cache yet is kept with ``undecided`` True so that Python decides it (and fills the cache).
 * Each step below mirrors one line of ``skips``: the Python method is the definition, this is its speed.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

static const char DATE[] = "\"effectiveDateTime\":\"";
static const char CODE[] = "\"code\":{\"coding\":[";
static const char CONTAINED[] = "\"contained\"";
static const char COMPONENT[] = "\"component\"";

/* bytes comparison as Python orders bytes: a <=> b */
static int
compare(const char *a, Py_ssize_t la, const char *b, Py_ssize_t lb)
{
    int c = memcmp(a, b, (size_t)(la < lb ? la : lb));
    if (c != 0)
        return c;
    return la < lb ? -1 : (la > lb ? 1 : 0);
}

static const char *
find(const char *s, Py_ssize_t n, const char *needle, size_t k)
{
    if (n < (Py_ssize_t)k)
        return NULL;
    return memmem(s, (size_t)n, needle, k);
}

/* 1: skip, 0: keep, 2: keep, undecided (coding list not in the cache), -1: error */
static int
decide(const char *s, Py_ssize_t n, const char *latest, Py_ssize_t llatest, PyObject *cache)
{
    const char *e = s + n;
    const char *i = find(s, n, DATE, sizeof DATE - 1);
    if (i == NULL)
        return 0;
    const char *day = i + (sizeof DATE - 1);
    Py_ssize_t dl = e - day < 10 ? e - day : 10;
    if (compare(day, dl, latest, llatest) >= 0 || dl < 5 || day[4] != '-' || dl < 8 || day[7] != '-')
        return 0;
    const char *c = find(s, n, CODE, sizeof CODE - 1);
    if (c == NULL)
        return 0;
    const char *start = c + (sizeof CODE - 1);
    const char *close = find(c, e - c, "}]", 2);
    /* codings = line[c + 18 : line.find(b"}]", c) + 1]: empty when there is no "}]" */
    Py_ssize_t len = close == NULL ? 0 : (close + 1) - start;
    if (len < 0)
        len = 0;
    PyObject *key = PyBytes_FromStringAndSize(start, len);
    if (key == NULL)
        return -1;
    PyObject *first = PyDict_GetItemWithError(cache, key); /* borrowed */
    Py_DECREF(key);
    if (first == NULL)
        return PyErr_Occurred() ? -1 : 2;
    if (first == Py_None)
        return 0;
    if (!PyBytes_Check(first)) {
        PyErr_SetString(PyExc_TypeError, "cache values must be bytes or None");
        return -1;
    }
    if (compare(day, dl, PyBytes_AS_STRING(first), PyBytes_GET_SIZE(first)) >= 0)
        return 0;
    if (find(s, n, CONTAINED, sizeof CONTAINED - 1) != NULL)
        return 0;
    if (find(s, c - s, COMPONENT, sizeof COMPONENT - 1) != NULL)
        return 0;
    return 1;
}

static int
append(PyObject *kept, Py_ssize_t index, const char *s, Py_ssize_t n, int undecided)
{
    PyObject *item = Py_BuildValue("(ny#O)", index, s, n, undecided ? Py_True : Py_False);
    if (item == NULL)
        return -1;
    int rc = PyList_Append(kept, item);
    Py_DECREF(item);
    return rc;
}

static PyObject *
kept(PyObject *Py_UNUSED(self), PyObject *args)
{
    Py_buffer buf, prefix, latest;
    PyObject *cache;
    if (!PyArg_ParseTuple(args, "y*y*y*O!", &buf, &prefix, &latest, &PyDict_Type, &cache))
        return NULL;
    PyObject *out = PyList_New(0);
    const char *s = buf.buf, *end = s + buf.len;
    Py_ssize_t index = 0;
    int failed = out == NULL;
    while (!failed) {
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        const char *e = nl == NULL ? end : nl;
        Py_ssize_t n = e - s;
        int verdict = 0;
        if (n >= prefix.len && memcmp(s, prefix.buf, (size_t)prefix.len) == 0)
            verdict = decide(s, n, latest.buf, latest.len, cache);
        if (verdict < 0 || (verdict != 1 && append(out, index, s, n, verdict == 2) < 0))
            failed = 1;
        index++;
        if (nl == NULL)
            break;
        s = nl + 1;
    }
    PyBuffer_Release(&buf);
    PyBuffer_Release(&prefix);
    PyBuffer_Release(&latest);
    if (failed) {
        Py_XDECREF(out);
        return NULL;
    }
    return Py_BuildValue("(Nn)", out, index);
}

static PyMethodDef methods[] = {
    {"kept", kept, METH_VARARGS,
     "kept(buf, prefix, latest, cache) -> ([(index, line, undecided), ...], line count)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_linescan", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC
PyInit__linescan(void)
{
    return PyModule_Create(&module);
}
