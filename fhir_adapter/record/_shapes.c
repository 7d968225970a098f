/* The shape check of record/shapes.py, on a parsed resource: is every element the table lists of its JSON type?
 *
 * shape(value, node, table) follows a node compiled by shapes.py from mappings/fhir-elements.json:
 *   a type (str, bool): value must be exactly of it;
 *   a tuple of types (int, float): value must be exactly one of them;
 *   a list [item]: value must be a list whose every element passes ``item``;
 *   a dict {key: node}: value must be an object; each of its keys found in the dict must pass that node
 *     (keys not in the dict are not read by the adapter and not checked);
 *   None: contained resources: a list of objects, each passing ``table[its resourceType]`` (or ``table["*"]``).
 * It returns 0 (the shape holds), 1 (it does not: Python then says where), 2 (undecided), -1 (error).
 * Only speed lives here: ``shapes.shape_problem`` is the definition and gives the same answers without it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static int walk(PyObject *value, PyObject *node, PyObject *table, int depth);

static int
contained(PyObject *value, PyObject *table, int depth)
{
    if (!PyList_CheckExact(value))
        return 1;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(value); i++) {
        PyObject *inner = PyList_GET_ITEM(value, i);
        if (!PyDict_CheckExact(inner))
            return 1;
        PyObject *rtype = PyDict_GetItemString(inner, "resourceType"); /* borrowed */
        if (rtype == NULL || !PyUnicode_CheckExact(rtype))
            return 1;
        PyObject *node = PyDict_GetItemWithError(table, rtype);
        if (node == NULL) {
            if (PyErr_Occurred())
                return -1;
            node = PyDict_GetItemString(table, "*");
            if (node == NULL)
                return 2;
        }
        int r = walk(inner, node, table, depth + 1);
        if (r != 0)
            return r;
    }
    return 0;
}

static int
walk(PyObject *value, PyObject *node, PyObject *table, int depth)
{
    if (depth > 200) /* deeper than any FHIR element the table reaches through data: let Python decide */
        return 2;
    if (PyType_Check(node))
        return Py_IS_TYPE(value, (PyTypeObject *)node) ? 0 : 1;
    if (PyDict_CheckExact(node)) {
        if (!PyDict_CheckExact(value))
            return 1;
        Py_ssize_t pos = 0;
        PyObject *key, *item;
        int verdict = 0;
        while (PyDict_Next(value, &pos, &key, &item)) {
            PyObject *sub = PyDict_GetItemWithError(node, key); /* borrowed */
            if (sub == NULL) {
                if (PyErr_Occurred())
                    return -1;
                continue;
            }
            int r = sub == Py_None ? contained(item, table, depth + 1) : walk(item, sub, table, depth + 1);
            if (r == 1 || r < 0)
                return r;
            if (r == 2)
                verdict = 2;
        }
        return verdict;
    }
    if (PyList_CheckExact(node)) {
        if (!PyList_CheckExact(value))
            return 1;
        PyObject *sub = PyList_GET_ITEM(node, 0);
        int verdict = 0;
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(value); i++) {
            int r = walk(PyList_GET_ITEM(value, i), sub, table, depth + 1);
            if (r == 1 || r < 0)
                return r;
            if (r == 2)
                verdict = 2;
        }
        return verdict;
    }
    if (PyTuple_CheckExact(node)) {
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(node); i++)
            if (Py_IS_TYPE(value, (PyTypeObject *)PyTuple_GET_ITEM(node, i)))
                return 0;
        return 1;
    }
    return 2; /* anything else: Python decides */
}

static PyObject *
shape(PyObject *Py_UNUSED(self), PyObject *args)
{
    PyObject *value, *node, *table;
    if (!PyArg_ParseTuple(args, "OOO!", &value, &node, &PyDict_Type, &table))
        return NULL;
    int r = walk(value, node, table, 0);
    if (r < 0)
        return NULL;
    return PyLong_FromLong(r);
}

static PyMethodDef methods[] = {
    {"shape", shape, METH_VARARGS, "shape(value, node, table) -> 0 (holds), 1 (does not), 2 (undecided)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_shapes", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC
PyInit__shapes(void)
{
    return PyModule_Create(&module);
}
