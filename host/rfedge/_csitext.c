/*
 * rfedge._csitext: the text -> number conversions of the ESP32 CSI console-log reader, in C.
 *
 * Optional speed-up for rfedge/io/esp_csi.py, which falls back to numpy when this module is missing.
 * Both functions implement the reader's strict reference rules (esp_csi._strict) exactly, for a
 * whole batch of records at once, and raise ValueError when any record breaks them: the caller then
 * hands the batch to the general path, which finds the bad records one by one.
 *
 * parse_int8_lists(payloads: list[bytes]) -> (bytearray, list[int])
 *     Each payload is the text between the brackets of one record. Values are separated by runs of
 *     commas and whitespace (the whitespace Python's str.split() knows on latin-1 text: 0x09-0x0d,
 *     0x1c-0x1f, space, 0x85, 0xa0); a value is [-+]?[0-9]+ (ASCII digits, any number of leading
 *     zeros); a lone sign joins the value after it ("- 5" is -5). Returns all values as int8, back
 *     to back, and the number of values of each payload (0 for an empty one). ValueError when a
 *     payload holds anything else, or a value outside int8.
 *
 * parse_heads(heads: list[bytes], kinds: bytes) -> (bytearray, bytearray, list[list[bytes]])
 *     Each head is the comma-separated fields before the payload; kinds has one letter per field:
 *     's' skip, 'i' int64 ([-+]?[0-9]+ in range), 'f' float (Python's float() of the text, with no
 *     '_', no non-ASCII byte, no leading or trailing ASCII whitespace), 't' text (kept as bytes).
 *     Returns the int fields as native int64 and the float fields as float64, column after column
 *     (column j of n heads at [j*n, (j+1)*n)), and one list of bytes per text field. ValueError
 *     when a head has another field count or a bad number.
 *
 * C99, Python.h only. Inputs are read through their lengths only (never past them, never relying
 * on the NUL after a bytes object's data); no Python code can run while a record's text is read.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* bumped on any change of the functions' contract: esp_csi ignores a build it does not expect */
#define CSITEXT_API 1

/* separators between payload values: "," and the whitespace of latin-1 str.split() */
static const unsigned char SEP[256] = {
    [9] = 1, [10] = 1, [11] = 1, [12] = 1, [13] = 1,
    [0x1c] = 1, [0x1d] = 1, [0x1e] = 1, [0x1f] = 1,
    [' '] = 1, [','] = 1, [0x85] = 1, [0xa0] = 1,
};

#define IS_DIGIT(c) ((unsigned)((c) - '0') <= 9u)

/* Values of one payload into dst (room for cap values). Returns the count, -1 for text that is not
 * a list of integers, -2 for an integer outside int8. */
static Py_ssize_t
parse_payload(const unsigned char *s, Py_ssize_t n, int8_t *dst, Py_ssize_t cap)
{
    Py_ssize_t i = 0, k = 0;
    for (;;) {
        while (i < n && SEP[s[i]])
            i++;
        if (i == n)
            return k;
        int neg = 0;
        if (s[i] == '-' || s[i] == '+') {
            neg = s[i] == '-';
            i++;
            if (i < n && SEP[s[i]]) {   /* a lone sign: it joins the next value, which has no sign */
                while (i < n && SEP[s[i]])
                    i++;
            }
        }
        if (i == n || !IS_DIGIT(s[i]))
            return -1;
        int v = 0;
        while (i < n && IS_DIGIT(s[i])) {
            if (v < 1000)               /* saturate: anything >= 1000 is out of range anyway */
                v = v * 10 + (s[i] - '0');
            i++;
        }
        if (i < n && !SEP[s[i]])
            return -1;                  /* e.g. "5x", "5-3", "1.5" */
        if (v > (neg ? 128 : 127))
            return -2;
        if (k >= cap)
            return -1;                  /* cannot happen: cap bounds the values n bytes can hold */
        dst[k++] = (int8_t)(neg ? -v : v);
    }
}

static PyObject *
parse_int8_lists(PyObject *self, PyObject *args)
{
    PyObject *pays;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!:parse_int8_lists", &PyList_Type, &pays))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(pays);
    Py_ssize_t bound = 0;
    for (Py_ssize_t r = 0; r < n; r++) {
        PyObject *p = PyList_GET_ITEM(pays, r);
        if (!PyBytes_Check(p)) {
            PyErr_Format(PyExc_TypeError, "payloads must be bytes, not %.80s", Py_TYPE(p)->tp_name);
            return NULL;
        }
        /* k values take at least 2k-1 bytes (a digit each, a separator between) */
        bound += (PyBytes_GET_SIZE(p) + 1) / 2;
    }
    Py_ssize_t *lens = PyMem_Malloc(sizeof(Py_ssize_t) * (size_t)(n ? n : 1));
    if (lens == NULL)
        return PyErr_NoMemory();
    PyObject *buf = PyByteArray_FromStringAndSize(NULL, bound);
    if (buf == NULL) {
        PyMem_Free(lens);
        return NULL;
    }
    int8_t *dst = (int8_t *)PyByteArray_AS_STRING(buf);
    Py_ssize_t used = 0;
    for (Py_ssize_t r = 0; r < n; r++) {
        /* re-read the list: the allocations above may have run a finalizer that changed it */
        if (r >= PyList_GET_SIZE(pays) || !PyBytes_Check(PyList_GET_ITEM(pays, r))) {
            PyErr_SetString(PyExc_RuntimeError, "payload list changed during parsing");
            goto fail;
        }
        PyObject *p = PyList_GET_ITEM(pays, r);
        Py_ssize_t len = PyBytes_GET_SIZE(p);
        Py_ssize_t k = parse_payload((const unsigned char *)PyBytes_AS_STRING(p), len, dst + used,
                                     bound - used);
        if (k < 0) {
            PyErr_Format(PyExc_ValueError, k == -2 ? "payload %zd: value out of int8 range"
                                                   : "payload %zd: bad number", r);
            goto fail;
        }
        lens[r] = k;
        used += k;
    }
    if (PyByteArray_Resize(buf, used) < 0)
        goto fail;
    PyObject *out_lens = PyList_New(n);
    if (out_lens == NULL)
        goto fail;
    for (Py_ssize_t r = 0; r < n; r++) {
        PyObject *v = PyLong_FromSsize_t(lens[r]);
        if (v == NULL) {
            Py_DECREF(out_lens);
            goto fail;
        }
        PyList_SET_ITEM(out_lens, r, v);
    }
    PyMem_Free(lens);
    return Py_BuildValue("(NN)", buf, out_lens);
fail:
    PyMem_Free(lens);
    Py_DECREF(buf);
    return NULL;
}

/* [-+]?[0-9]+ within int64 */
static int
parse_i64(const unsigned char *s, Py_ssize_t n, int64_t *out)
{
    Py_ssize_t i = 0;
    int neg = 0;
    if (n > 0 && (s[0] == '-' || s[0] == '+')) {
        neg = s[0] == '-';
        i = 1;
    }
    if (i == n)
        return -1;
    const uint64_t limit = neg ? (uint64_t)INT64_MAX + 1u : (uint64_t)INT64_MAX;
    uint64_t acc = 0;
    for (; i < n; i++) {
        if (!IS_DIGIT(s[i]))
            return -1;
        unsigned d = (unsigned)(s[i] - '0');
        if (acc > (limit - d) / 10u)
            return -1;
        acc = acc * 10u + d;
    }
    if (!neg)
        *out = (int64_t)acc;
    else if (acc == (uint64_t)INT64_MAX + 1u)
        *out = INT64_MIN;
    else
        *out = -(int64_t)acc;
    return 0;
}

/* Python's float() of the field, refusing what esp_csi._float_or_none refuses */
static int
parse_f64(const unsigned char *s, Py_ssize_t n, double *out)
{
    if (n == 0)
        return -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        /* NUL: float() stops there and refuses the rest, so refuse it here too */
        if (s[i] >= 0x80 || s[i] == '_' || s[i] == 0)
            return -1;
    }
    /* bytes.strip() whitespace at either end */
    static const char ws[] = " \t\n\r\x0b\x0c";
    if (memchr(ws, s[0], sizeof ws - 1) || memchr(ws, s[n - 1], sizeof ws - 1))
        return -1;
    char small[128];
    char *buf = small;
    if (n >= (Py_ssize_t)sizeof small) {
        buf = PyMem_Malloc((size_t)n + 1);
        if (buf == NULL) {
            PyErr_NoMemory();
            return -2;
        }
    }
    memcpy(buf, s, (size_t)n);
    buf[n] = '\0';
    char *end = NULL;
    double v = PyOS_string_to_double(buf, &end, NULL);
    int ok = end == buf + n && !(v == -1.0 && PyErr_Occurred());
    if (buf != small)
        PyMem_Free(buf);
    if (!ok) {
        PyErr_Clear();
        return -1;
    }
    *out = v;
    return 0;
}

static PyObject *
parse_heads(PyObject *self, PyObject *args)
{
    PyObject *heads;
    const char *kinds;
    Py_ssize_t nf;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!y#:parse_heads", &PyList_Type, &heads, &kinds, &nf))
        return NULL;
    Py_ssize_t ni = 0, nfl = 0, nt = 0;
    for (Py_ssize_t j = 0; j < nf; j++) {
        switch (kinds[j]) {
        case 'i': ni++; break;
        case 'f': nfl++; break;
        case 't': nt++; break;
        case 's': break;
        default:
            PyErr_Format(PyExc_TypeError, "unknown field kind %d (expected one of b'sift')",
                         (int)(unsigned char)kinds[j]);
            return NULL;
        }
    }
    if (nf == 0) {
        PyErr_SetString(PyExc_TypeError, "kinds must not be empty");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(heads);
    for (Py_ssize_t r = 0; r < n; r++) {
        PyObject *h = PyList_GET_ITEM(heads, r);
        if (!PyBytes_Check(h)) {
            PyErr_Format(PyExc_TypeError, "heads must be bytes, not %.80s", Py_TYPE(h)->tp_name);
            return NULL;
        }
    }
    if ((ni && n > PY_SSIZE_T_MAX / 8 / ni) || (nfl && n > PY_SSIZE_T_MAX / 8 / nfl))
        return PyErr_NoMemory();
    PyObject *ints = NULL, *floats = NULL, *texts = NULL, *h = NULL;
    ints = PyByteArray_FromStringAndSize(NULL, n * ni * 8);
    floats = PyByteArray_FromStringAndSize(NULL, n * nfl * 8);
    texts = PyList_New(nt);
    if (ints == NULL || floats == NULL || texts == NULL)
        goto fail;
    for (Py_ssize_t j = 0; j < nt; j++) {
        PyObject *col = PyList_New(n);
        if (col == NULL)
            goto fail;
        PyList_SET_ITEM(texts, j, col);
    }
    char *ip = PyByteArray_AS_STRING(ints), *fp = PyByteArray_AS_STRING(floats);
    for (Py_ssize_t r = 0; r < n; r++) {
        /* re-read the list (allocations may run a finalizer) and hold the head while reading it */
        if (r >= PyList_GET_SIZE(heads) || !PyBytes_Check(PyList_GET_ITEM(heads, r))) {
            PyErr_SetString(PyExc_RuntimeError, "head list changed during parsing");
            goto fail;
        }
        h = PyList_GET_ITEM(heads, r);
        Py_INCREF(h);
        const unsigned char *s = (const unsigned char *)PyBytes_AS_STRING(h);
        Py_ssize_t len = PyBytes_GET_SIZE(h);
        Py_ssize_t start = 0, field = 0, ci = 0, cf = 0, ct = 0;
        for (Py_ssize_t pos = 0; pos <= len; pos++) {
            if (pos < len && s[pos] != ',')
                continue;
            if (field >= nf) {
                PyErr_Format(PyExc_ValueError, "head %zd: too many fields", r);
                goto fail;
            }
            const unsigned char *f = s + start;
            Py_ssize_t flen = pos - start;
            switch (kinds[field]) {
            case 'i': {
                int64_t v;
                if (parse_i64(f, flen, &v) < 0) {
                    PyErr_Format(PyExc_ValueError, "head %zd field %zd: bad number", r, field);
                    goto fail;
                }
                memcpy(ip + 8 * (ci * n + r), &v, 8);
                ci++;
                break;
            }
            case 'f': {
                double v;
                int e = parse_f64(f, flen, &v);
                if (e == -2)
                    goto fail;
                if (e < 0) {
                    PyErr_Format(PyExc_ValueError, "head %zd field %zd: bad number", r, field);
                    goto fail;
                }
                memcpy(fp + 8 * (cf * n + r), &v, 8);
                cf++;
                break;
            }
            case 't': {
                PyObject *b = PyBytes_FromStringAndSize((const char *)f, flen);
                if (b == NULL)
                    goto fail;
                PyList_SET_ITEM(PyList_GET_ITEM(texts, ct), r, b);
                ct++;
                break;
            }
            default:
                break;
            }
            field++;
            start = pos + 1;
        }
        if (field != nf) {
            PyErr_Format(PyExc_ValueError, "head %zd: too few fields", r);
            goto fail;
        }
        Py_CLEAR(h);
    }
    return Py_BuildValue("(NNN)", ints, floats, texts);
fail:
    Py_XDECREF(h);
    Py_XDECREF(ints);
    Py_XDECREF(floats);
    Py_XDECREF(texts);
    return NULL;
}

static PyMethodDef methods[] = {
    {"parse_int8_lists", parse_int8_lists, METH_VARARGS,
     "parse_int8_lists(payloads: list[bytes]) -> (bytearray, list[int]): int8 values of each payload, "
     "back to back, and their counts; ValueError for a payload the strict rules refuse or a value "
     "outside int8."},
    {"parse_heads", parse_heads, METH_VARARGS,
     "parse_heads(heads: list[bytes], kinds: bytes) -> (bytearray, bytearray, list[list[bytes]]): int64 "
     "and float64 columns (column after column) and text columns of comma-separated heads; kinds "
     "holds one of b'sift' per field; ValueError for a wrong field count or a bad number."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "rfedge._csitext",
    "Strict text -> number conversions of ESP32 CSI console logs (see rfedge.io.esp_csi).",
    -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__csitext(void)
{
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddIntConstant(m, "API", CSITEXT_API) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
