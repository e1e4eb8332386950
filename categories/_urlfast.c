/*
 * categories._urlfast: the fast path of categories.urlnorm.canonical_url, in C, and the
 * HostFilter that lets DomainIndex skip most trie queries for hosts no entry covers.
 *
 * canonical_fast(target) does exactly what urlnorm._canonical_url_fast_py does: for the
 * ordinary shape of URL (the _FAST_URL regex) it returns the CanonicalURL, it raises URLError
 * for a port above 65535, and it returns None for everything else, which then goes to the
 * general parser. tests/test_urlfast_equivalence.py holds the two implementations together;
 * change them together.
 *
 * The accepted shape, as in the regex (matched case-insensitively, ASCII only):
 *
 *   http or https, "://",
 *   a host of dot-separated labels: every label but the last is 1-63 of [a-z0-9_-] and neither
 *     starts nor ends with "-"; the last is 1-63 of [a-z0-9-] starting with a letter;
 *   optionally ":" and 1-5 digits;
 *   a path: empty, or "/" segments where each segment starts with a character of
 *     [a-z0-9_~!$&'()*+,=:@-] and goes on with those or ".", with an optional final "/";
 *   optionally "?" and a query without "%" (up to the first "#");
 *   optionally "#" and anything at all (the fragment, dropped).
 *
 * Then, as in Python: inputs longer than MAX_URL_LENGTH, hosts longer than MAX_HOST_LENGTH
 * and hosts containing "xn--" go to the general parser; host, scheme and path are lower-cased,
 * the query with str.lower(); a default port is dropped.
 *
 * configure(CanonicalURL, URLError, HostKind.NAME) must be called once before use (urlnorm
 * does it on import). The result object is built directly in CanonicalURL's slots, which is
 * what its generated (frozen, slotted) dataclass __init__ does.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#define MAX_URL_LENGTH (16 * 1024)
#define MAX_HOST_LENGTH 253
#define MAX_LABEL_LENGTH 63

/* Character classes, indexed by ASCII code. */
#define C_LABEL 0x01   /* [A-Za-z0-9_-]: inside a non-final host label */
#define C_EDGE 0x02    /* [A-Za-z0-9_]: first/last character of a non-final host label */
#define C_FINAL 0x04   /* [A-Za-z0-9-]: inside the final host label */
#define C_ALPHA 0x08   /* [A-Za-z]: first character of the final host label */
#define C_SEG0 0x10    /* first character of a path segment */
#define C_SEG 0x20     /* later characters of a path segment (C_SEG0 and ".") */
#define C_DIGIT 0x40

static unsigned char char_class[128];

static PyTypeObject *url_type = NULL;
static PyObject *url_error = NULL;
static PyObject *name_kind = NULL;
static PyObject *str_http = NULL;
static PyObject *str_https = NULL;
static PyObject *str_lower = NULL;

static const char *const field_names[5] = {"scheme", "host", "port", "path", "host_kind"};
static Py_ssize_t field_offsets[5];

static void
init_char_class(void)
{
    const char *seg_extra = "_~!$&'()*+,=:@-";
    for (int c = 0; c < 128; c++) {
        unsigned char k = 0;
        int alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        int digit = c >= '0' && c <= '9';
        if (alpha || digit || c == '_' || c == '-') k |= C_LABEL;
        if (alpha || digit || c == '_') k |= C_EDGE;
        if (alpha || digit || c == '-') k |= C_FINAL;
        if (alpha) k |= C_ALPHA;
        if (alpha || digit || (c != 0 && strchr(seg_extra, c) != NULL)) k |= C_SEG0 | C_SEG;
        if (c == '.') k |= C_SEG;
        if (digit) k |= C_DIGIT;
        char_class[c] = k;
    }
}

static inline int
has_class(Py_UCS4 c, unsigned char k)
{
    return c < 128 && (char_class[c] & k) != 0;
}

/* ASCII lower case; any other code point is returned unchanged (never truncated). */
static inline Py_UCS4
ascii_lower(Py_UCS4 c)
{
    return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
}

/* Is [start, end) a valid host (see the header)? The characters are known to be C_LABEL or ".". */
static int
valid_host(int kind, const void *data, Py_ssize_t start, Py_ssize_t end)
{
    Py_ssize_t label = start;
    for (;;) {
        Py_ssize_t stop = label;
        while (stop < end && PyUnicode_READ(kind, data, stop) != '.') {
            stop++;
        }
        Py_ssize_t length = stop - label;
        if (length == 0 || length > MAX_LABEL_LENGTH) {
            return 0;
        }
        if (stop == end) {
            /* The final label: a letter, then letters, digits and hyphens (no underscore). */
            if (!has_class(PyUnicode_READ(kind, data, label), C_ALPHA)) {
                return 0;
            }
            for (Py_ssize_t i = label + 1; i < stop; i++) {
                if (!has_class(PyUnicode_READ(kind, data, i), C_FINAL)) {
                    return 0;
                }
            }
            return 1;
        }
        if (!has_class(PyUnicode_READ(kind, data, label), C_EDGE)
            || !has_class(PyUnicode_READ(kind, data, stop - 1), C_EDGE)) {
            return 0;
        }
        label = stop + 1;
    }
}

static PyObject *
ascii_lower_substring(int kind, const void *data, Py_ssize_t start, Py_ssize_t end)
{
    PyObject *out = PyUnicode_New(end - start, 127);
    if (out == NULL) {
        return NULL;
    }
    Py_UCS1 *dst = PyUnicode_1BYTE_DATA(out);
    for (Py_ssize_t i = start; i < end; i++) {
        *dst++ = (Py_UCS1)ascii_lower(PyUnicode_READ(kind, data, i));
    }
    return out;
}

/* The path (lower-cased, "/" when empty) and, when non-empty, "?" and the lower-cased query. */
static PyObject *
build_path(PyObject *target, int kind, const void *data, Py_ssize_t p_start, Py_ssize_t p_end,
           Py_ssize_t q_start, Py_ssize_t q_end)
{
    Py_ssize_t p_len = p_end - p_start;
    Py_ssize_t q_len = q_end - q_start;
    int query_ascii = 1;
    for (Py_ssize_t i = q_start; i < q_end; i++) {
        if (PyUnicode_READ(kind, data, i) >= 128) {
            query_ascii = 0;
            break;
        }
    }
    Py_ssize_t head = p_len ? p_len : 1;
    Py_ssize_t total = head + ((q_len && query_ascii) ? q_len + 1 : 0);
    PyObject *path = PyUnicode_New(total, 127);
    if (path == NULL) {
        return NULL;
    }
    Py_UCS1 *dst = PyUnicode_1BYTE_DATA(path);
    if (p_len == 0) {
        *dst++ = '/';
    }
    for (Py_ssize_t i = p_start; i < p_end; i++) {
        *dst++ = (Py_UCS1)ascii_lower(PyUnicode_READ(kind, data, i));
    }
    if (q_len == 0) {
        return path;
    }
    if (query_ascii) {
        *dst++ = '?';
        for (Py_ssize_t i = q_start; i < q_end; i++) {
            *dst++ = (Py_UCS1)ascii_lower(PyUnicode_READ(kind, data, i));
        }
        return path;
    }
    /* Non-ASCII query: str.lower() exactly as Python does it (it can change the length). */
    PyObject *query = PyUnicode_Substring(target, q_start, q_end);
    if (query == NULL) {
        Py_DECREF(path);
        return NULL;
    }
    PyObject *lowered = PyObject_CallMethodNoArgs(query, str_lower);
    Py_DECREF(query);
    if (lowered == NULL) {
        Py_DECREF(path);
        return NULL;
    }
    PyObject *joined = PyUnicode_FromFormat("%U?%U", path, lowered);
    Py_DECREF(path);
    Py_DECREF(lowered);
    return joined;
}

static PyObject *
new_url(PyObject *scheme, PyObject *host, PyObject *port, PyObject *path)
{
    PyObject *obj = url_type->tp_alloc(url_type, 0);
    if (obj == NULL) {
        return NULL;
    }
    PyObject *values[5] = {scheme, host, port, path, name_kind};
    for (int i = 0; i < 5; i++) {
        PyObject **slot = (PyObject **)((char *)obj + field_offsets[i]);
        Py_INCREF(values[i]);
        *slot = values[i];
    }
    return obj;
}

static PyObject *
canonical_fast(PyObject *Py_UNUSED(module), PyObject *target)
{
    if (url_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "categories._urlfast.configure() was not called");
        return NULL;
    }
    if (!PyUnicode_Check(target)) {
        PyErr_Format(PyExc_TypeError, "expected str, got %.100s", Py_TYPE(target)->tp_name);
        return NULL;
    }
    if (PyUnicode_READY(target) < 0) {
        return NULL;
    }
    Py_ssize_t n = PyUnicode_GET_LENGTH(target);
    if (n > MAX_URL_LENGTH || n < 8) {
        Py_RETURN_NONE;
    }
    int kind = PyUnicode_KIND(target);
    const void *data = PyUnicode_DATA(target);

    /* Scheme: http or https, any case, then "://". */
    if (ascii_lower(PyUnicode_READ(kind, data, 0)) != 'h'
        || ascii_lower(PyUnicode_READ(kind, data, 1)) != 't'
        || ascii_lower(PyUnicode_READ(kind, data, 2)) != 't'
        || ascii_lower(PyUnicode_READ(kind, data, 3)) != 'p') {
        Py_RETURN_NONE;
    }
    Py_ssize_t i = 4;
    int https = 0;
    if (ascii_lower(PyUnicode_READ(kind, data, i)) == 's') {
        https = 1;
        i++;
    }
    if (i + 3 > n || PyUnicode_READ(kind, data, i) != ':' || PyUnicode_READ(kind, data, i + 1) != '/'
        || PyUnicode_READ(kind, data, i + 2) != '/') {
        Py_RETURN_NONE;
    }
    i += 3;

    /* Host: the run of label characters and dots, which must be well-formed labels. */
    Py_ssize_t h_start = i;
    while (i < n) {
        Py_UCS4 c = PyUnicode_READ(kind, data, i);
        if (c != '.' && !has_class(c, C_LABEL)) {
            break;
        }
        i++;
    }
    Py_ssize_t h_end = i;
    if (!valid_host(kind, data, h_start, h_end)) {
        Py_RETURN_NONE;
    }

    /* Port: ":" and 1-5 digits. */
    Py_ssize_t port_start = -1, port_end = -1;
    if (i < n && PyUnicode_READ(kind, data, i) == ':') {
        i++;
        port_start = i;
        while (i < n && i - port_start < 6 && has_class(PyUnicode_READ(kind, data, i), C_DIGIT)) {
            i++;
        }
        port_end = i;
        if (port_end == port_start || port_end - port_start > 5) {
            Py_RETURN_NONE;
        }
    }

    /* Path: up to the first "?" or "#" or the end; "/" segments as in the header. */
    Py_ssize_t p_start = i;
    while (i < n) {
        Py_UCS4 c = PyUnicode_READ(kind, data, i);
        if (c == '?' || c == '#') {
            break;
        }
        if (c == '/') {
            if (i + 1 < n) {
                Py_UCS4 next = PyUnicode_READ(kind, data, i + 1);
                if (next != '?' && next != '#' && !has_class(next, C_SEG0)) {
                    Py_RETURN_NONE;
                }
            }
        }
        else if (i == p_start || !has_class(c, C_SEG)) {
            Py_RETURN_NONE;
        }
        i++;
    }
    Py_ssize_t p_end = i;

    /* Query: after "?", up to "#" or the end, with no "%" in it. The fragment is dropped. */
    Py_ssize_t q_start = i, q_end = i;
    if (i < n && PyUnicode_READ(kind, data, i) == '?') {
        i++;
        q_start = i;
        while (i < n) {
            Py_UCS4 c = PyUnicode_READ(kind, data, i);
            if (c == '#') {
                break;
            }
            if (c == '%') {
                Py_RETURN_NONE;
            }
            i++;
        }
        q_end = i;
    }

    /* Host checks that send the URL to the general parser (before the port check, as in Python). */
    Py_ssize_t h_len = h_end - h_start;
    if (h_len > MAX_HOST_LENGTH) {
        Py_RETURN_NONE;
    }
    PyObject *host = ascii_lower_substring(kind, data, h_start, h_end);
    if (host == NULL) {
        return NULL;
    }
    const Py_UCS1 *hd = PyUnicode_1BYTE_DATA(host);
    for (Py_ssize_t k = 0; k + 4 <= h_len; k++) {
        if (hd[k] == 'x' && hd[k + 1] == 'n' && hd[k + 2] == '-' && hd[k + 3] == '-') {
            Py_DECREF(host);
            Py_RETURN_NONE;
        }
    }

    PyObject *port = Py_None;
    Py_INCREF(port);
    if (port_start >= 0) {
        long value = 0;
        for (Py_ssize_t k = port_start; k < port_end; k++) {
            value = value * 10 + (long)(PyUnicode_READ(kind, data, k) - '0');
        }
        if (value > 65535) {
            PyObject *text = PyUnicode_Substring(target, port_start, port_end);
            if (text != NULL) {
                PyErr_Format(url_error, "port out of range: %U", text);
                Py_DECREF(text);
            }
            Py_DECREF(host);
            Py_DECREF(port);
            return NULL;
        }
        if (value != (https ? 443 : 80)) {
            Py_DECREF(port);
            port = PyLong_FromLong(value);
            if (port == NULL) {
                Py_DECREF(host);
                return NULL;
            }
        }
    }

    PyObject *path = build_path(target, kind, data, p_start, p_end, q_start, q_end);
    if (path == NULL) {
        Py_DECREF(host);
        Py_DECREF(port);
        return NULL;
    }
    PyObject *url = new_url(https ? str_https : str_http, host, port, path);
    Py_DECREF(host);
    Py_DECREF(port);
    Py_DECREF(path);
    return url;
}

static PyObject *
configure(PyObject *Py_UNUSED(module), PyObject *args)
{
    PyObject *type, *error, *kind;
    if (!PyArg_ParseTuple(args, "O!OO:configure", &PyType_Type, &type, &error, &kind)) {
        return NULL;
    }
    if (!PyExceptionClass_Check(error)) {
        PyErr_SetString(PyExc_TypeError, "configure: the second argument must be an exception class");
        return NULL;
    }
    PyTypeObject *tp = (PyTypeObject *)type;
    Py_ssize_t offsets[5];
    for (int i = 0; i < 5; i++) {
        /* Each field must be a plain object slot declared by the class itself. */
        PyObject *descr = PyDict_GetItemString(tp->tp_dict, field_names[i]);
        if (descr == NULL || !Py_IS_TYPE(descr, &PyMemberDescr_Type)) {
            PyErr_Format(PyExc_TypeError, "configure: %s.%s is not a slot", tp->tp_name,
                         field_names[i]);
            return NULL;
        }
        PyMemberDef *member = ((PyMemberDescrObject *)descr)->d_member;
        if (member->type != T_OBJECT_EX || (member->flags & READONLY) != 0
            || member->offset <= 0 || member->offset + (Py_ssize_t)sizeof(PyObject *) > tp->tp_basicsize) {
            PyErr_Format(PyExc_TypeError, "configure: %s.%s is not a writable object slot",
                         tp->tp_name, field_names[i]);
            return NULL;
        }
        offsets[i] = member->offset;
    }
    if (tp->tp_alloc == NULL) {
        PyErr_SetString(PyExc_TypeError, "configure: the URL type cannot be allocated");
        return NULL;
    }
    memcpy(field_offsets, offsets, sizeof(offsets));
    Py_INCREF(type);
    Py_XSETREF(url_type, tp);
    Py_INCREF(error);
    Py_XSETREF(url_error, error);
    Py_INCREF(kind);
    Py_XSETREF(name_kind, kind);
    Py_RETURN_NONE;
}

/*
 * HostFilter: a blocked Bloom filter over the keys of a DomainIndex's host trie, so that most
 * hosts that no entry covers are answered without a trie query (a false answer is certain; a
 * true answer means "ask the trie"). The keys are host keys: the host reversed, with a trailing
 * dot; a host is covered by the keys that are prefixes of its own key ending in a dot, so
 * may_match(host) probes each of those prefixes, hashing the host backwards in one pass.
 *
 * Format (the file hosts.filter of a snapshot), little-endian:
 *   0  "ESHF"   4  version (1)   5  probes per key (3)   6  two zero bytes
 *   8  number of 64-byte blocks (u32)   12  number of keys added (u32)   16  the blocks.
 * Hash: 64-bit FNV-1a over the key's characters, then MurmurHash3's fmix64; the high 32 bits
 * pick the block, three 9-bit fields of the low bits pick the bits in it. Keys with non-ASCII
 * characters are not added; may_match answers true for any host with a non-ASCII character.
 * Changing any of this needs a new version number.
 */
#define FILTER_HEADER 16
#define FILTER_BLOCK 64
#define FILTER_VERSION 1
#define FILTER_PROBES 3
#define FILTER_BITS_PER_KEY 16
#define FNV_OFFSET 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL

static inline uint64_t
fmix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

static inline const unsigned char *
filter_block(const unsigned char *blocks, uint32_t nblocks, uint64_t x)
{
    return blocks + (size_t)(((x >> 32) * (uint64_t)nblocks) >> 32) * FILTER_BLOCK;
}

static inline int
filter_probe(const unsigned char *blocks, uint32_t nblocks, uint64_t h)
{
    uint64_t x = fmix64(h);
    const unsigned char *block = filter_block(blocks, nblocks, x);
    for (int i = 0; i < FILTER_PROBES; i++) {
        unsigned bit = (unsigned)(x >> (9 * i)) & 511u;
        if ((block[bit >> 3] & (1u << (bit & 7))) == 0) {
            return 0;
        }
    }
    return 1;
}

static inline void
filter_add(unsigned char *blocks, uint32_t nblocks, uint64_t h)
{
    uint64_t x = fmix64(h);
    unsigned char *block = (unsigned char *)filter_block(blocks, nblocks, x);
    for (int i = 0; i < FILTER_PROBES; i++) {
        unsigned bit = (unsigned)(x >> (9 * i)) & 511u;
        block[bit >> 3] |= (unsigned char)(1u << (bit & 7));
    }
}

static inline uint32_t
read_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static inline void
write_u32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

static PyObject *
filter_build(PyObject *Py_UNUSED(module), PyObject *args)
{
    PyObject *keys;
    Py_ssize_t count;
    if (!PyArg_ParseTuple(args, "On:filter_build", &keys, &count)) {
        return NULL;
    }
    if (count < 0) {
        PyErr_SetString(PyExc_ValueError, "filter_build: negative key count");
        return NULL;
    }
    Py_ssize_t nblocks = (count * FILTER_BITS_PER_KEY + FILTER_BLOCK * 8 - 1) / (FILTER_BLOCK * 8);
    if (nblocks < 1) {
        nblocks = 1;
    }
    if (nblocks > (Py_ssize_t)UINT32_MAX || nblocks > (PY_SSIZE_T_MAX - FILTER_HEADER) / FILTER_BLOCK) {
        PyErr_SetString(PyExc_OverflowError, "filter_build: too many keys");
        return NULL;
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, FILTER_HEADER + nblocks * FILTER_BLOCK);
    if (out == NULL) {
        return NULL;
    }
    unsigned char *raw = (unsigned char *)PyBytes_AS_STRING(out);
    memset(raw, 0, FILTER_HEADER + nblocks * FILTER_BLOCK);
    unsigned char *blocks = raw + FILTER_HEADER;
    PyObject *it = PyObject_GetIter(keys);
    if (it == NULL) {
        Py_DECREF(out);
        return NULL;
    }
    uint32_t added = 0;
    PyObject *key;
    while ((key = PyIter_Next(it)) != NULL) {
        if (!PyUnicode_Check(key) || PyUnicode_READY(key) < 0) {
            if (!PyErr_Occurred()) {
                PyErr_SetString(PyExc_TypeError, "filter_build: keys must be str");
            }
            goto error;
        }
        Py_ssize_t n = PyUnicode_GET_LENGTH(key);
        int kind = PyUnicode_KIND(key);
        const void *data = PyUnicode_DATA(key);
        if (n == 0 || PyUnicode_READ(kind, data, n - 1) != '.') {
            PyErr_SetString(PyExc_ValueError, "filter_build: a host key must end with a dot");
            goto error;
        }
        uint64_t h = FNV_OFFSET;
        int ascii = 1;
        for (Py_ssize_t i = 0; i < n; i++) {
            Py_UCS4 c = PyUnicode_READ(kind, data, i);
            if (c >= 128) {
                ascii = 0;
                break;
            }
            h = (h ^ c) * FNV_PRIME;
        }
        if (ascii) {
            filter_add(blocks, (uint32_t)nblocks, h);
            added++;
        }
        Py_DECREF(key);
    }
    Py_DECREF(it);
    if (PyErr_Occurred()) {
        Py_DECREF(out);
        return NULL;
    }
    memcpy(raw, "ESHF", 4);
    raw[4] = FILTER_VERSION;
    raw[5] = FILTER_PROBES;
    write_u32(raw + 8, (uint32_t)nblocks);
    write_u32(raw + 12, added);
    return out;

error:
    Py_DECREF(key);
    Py_DECREF(it);
    Py_DECREF(out);
    return NULL;
}

typedef struct {
    PyObject_HEAD
    Py_buffer view;
    const unsigned char *blocks;
    uint32_t nblocks;
} HostFilterObject;

static PyObject *
HostFilter_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PyObject *source;
    static char *kwlist[] = {"data", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O:HostFilter", kwlist, &source)) {
        return NULL;
    }
    HostFilterObject *self = (HostFilterObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    if (PyObject_GetBuffer(source, &self->view, PyBUF_SIMPLE) < 0) {
        self->view.obj = NULL;
        Py_DECREF(self);
        return NULL;
    }
    const unsigned char *raw = (const unsigned char *)self->view.buf;
    Py_ssize_t len = self->view.len;
    if (len < FILTER_HEADER || memcmp(raw, "ESHF", 4) != 0 || raw[4] != FILTER_VERSION
        || raw[5] != FILTER_PROBES || read_u32(raw + 8) == 0
        || len != FILTER_HEADER + (Py_ssize_t)read_u32(raw + 8) * FILTER_BLOCK) {
        PyErr_SetString(PyExc_ValueError, "not a host filter of a version this build reads");
        Py_DECREF(self);
        return NULL;
    }
    self->nblocks = read_u32(raw + 8);
    self->blocks = raw + FILTER_HEADER;
    return (PyObject *)self;
}

static void
HostFilter_dealloc(HostFilterObject *self)
{
    if (self->view.obj != NULL) {
        PyBuffer_Release(&self->view);
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
HostFilter_may_match(HostFilterObject *self, PyObject *host)
{
    if (!PyUnicode_Check(host)) {
        PyErr_Format(PyExc_TypeError, "expected str, got %.100s", Py_TYPE(host)->tp_name);
        return NULL;
    }
    if (PyUnicode_READY(host) < 0) {
        return NULL;
    }
    Py_ssize_t n = PyUnicode_GET_LENGTH(host);
    int kind = PyUnicode_KIND(host);
    const void *data = PyUnicode_DATA(host);
    uint64_t h = FNV_OFFSET;
    for (Py_ssize_t i = n - 1; i >= 0; i--) {
        Py_UCS4 c = PyUnicode_READ(kind, data, i);
        if (c >= 128) {
            Py_RETURN_TRUE;
        }
        h = (h ^ c) * FNV_PRIME;
        if (c == '.' && filter_probe(self->blocks, self->nblocks, h)) {
            Py_RETURN_TRUE;
        }
    }
    h = (h ^ '.') * FNV_PRIME;
    return PyBool_FromLong(filter_probe(self->blocks, self->nblocks, h));
}

static PyMethodDef HostFilter_methods[] = {
    {"may_match", (PyCFunction)HostFilter_may_match, METH_O,
     "may_match(host) -> bool: False when no key covers the canonical host (certain); "
     "True when one may."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject HostFilterType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "categories._urlfast.HostFilter",
    .tp_basicsize = sizeof(HostFilterObject),
    .tp_dealloc = (destructor)HostFilter_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "HostFilter(data): a host filter built by filter_build(), read in place.",
    .tp_methods = HostFilter_methods,
    .tp_new = HostFilter_new,
};

static PyMethodDef methods[] = {
    {"canonical_fast", canonical_fast, METH_O,
     "canonical_fast(target) -> CanonicalURL | None\n\n"
     "The fast path of categories.urlnorm.canonical_url (None: use the general parser)."},
    {"filter_build", filter_build, METH_VARARGS,
     "filter_build(keys, count) -> bytes: a HostFilter over host keys (count: about how many)."},
    {"configure", configure, METH_VARARGS,
     "configure(CanonicalURL, URLError, HostKind.NAME): the types the fast path builds and raises."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "categories._urlfast",
    "C implementation of the fast path of categories.urlnorm.canonical_url.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__urlfast(void)
{
    init_char_class();
    str_http = PyUnicode_InternFromString("http");
    str_https = PyUnicode_InternFromString("https");
    str_lower = PyUnicode_InternFromString("lower");
    if (str_http == NULL || str_https == NULL || str_lower == NULL) {
        return NULL;
    }
    if (PyType_Ready(&HostFilterType) < 0) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) {
        return NULL;
    }
    Py_INCREF(&HostFilterType);
    if (PyModule_AddObject(m, "HostFilter", (PyObject *)&HostFilterType) < 0) {
        Py_DECREF(&HostFilterType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
