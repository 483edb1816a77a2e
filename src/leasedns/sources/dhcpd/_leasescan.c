/* leasedns.sources.dhcpd._leasescan: the lease parser's fast path in C.
 *
 * scan() reads lease blocks laid out exactly as dhcpd's write_lease() writes them -- the
 * grammar of _FAST in leases.py, nothing more -- and puts a Lease for each straight into the
 * caller's dict. Everything else (a gap that is not blank, a block whose date or address is
 * impossible or whose binding state dhcpd does not know) goes back to Python's general parser,
 * at the same places the regex path hands it over, so both paths give the same LeaseFile. The text is a latin-1 str (one char per
 * file byte) and may hold anything: every read is bounds-checked against its length, and no
 * buffer has a fixed size.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

typedef unsigned char uchar;

/* Lease's fields, in its order (tests/test_leasescan.py checks Lease._fields against it). */
enum {
    F_IP, F_STARTS, F_ENDS, F_CLTT, F_TSTP, F_TSFP, F_ATSFP, F_STATE, F_NEXT, F_REWIND, F_MAC,
    F_UID, F_HOST, F_SETS, F_OPTS, F_ABANDONED, F_PATH, F_LINE, NFIELDS
};

/* The time statements in the order write_lease() writes them, and the field each fills. */
static const char *const TIME_WORD[6] = {
    "  starts ", "  ends ", "  tstp ", "  tsfp ", "  atsfp ", "  cltt "};
static const Py_ssize_t TIME_WORD_LEN[6] = {9, 7, 7, 7, 8, 7};
static const int TIME_FIELD[6] = {F_STARTS, F_ENDS, F_TSTP, F_TSFP, F_ATSFP, F_CLTT};

#define ABSENT (-1)
#define NEVER (-2)

typedef struct {
    Py_ssize_t a, b; /* text[a:b]; a == ABSENT when the statement is missing */
} Span;

/* Where the parts of one matched block are; values are made only once it all matched. */
typedef struct {
    Span ip, state, next, rewind, mac, uid, host;
    Py_ssize_t time[6]; /* offset of "YYYY/MM/DD HH:MM:SS", or ABSENT, or NEVER */
    Py_ssize_t sets, nsets; /* the first `set` line and how many follow */
    Py_ssize_t opts, nopts;
    int uid_esc, host_esc; /* the quoted string has a backslash */
    Py_ssize_t end;
} Block;

static inline int is_digit(uchar c) { return c >= '0' && c <= '9'; }
static inline int is_lower(uchar c) { return c >= 'a' && c <= 'z'; }
static inline int is_lhex(uchar c) { return is_digit(c) || (c >= 'a' && c <= 'f'); }
static inline int is_hex(uchar c) { return is_lhex(c) || (c >= 'A' && c <= 'F'); }
static inline int hex_value(uchar c)
{
    return is_digit(c) ? c - '0' : (c >= 'a' ? c - 'a' : c - 'A') + 10;
}
static inline int is_setname(uchar c)
{
    return is_digit(c) || is_lower(c) || (c >= 'A' && c <= 'Z') || c == '_' || c == '.' ||
           c == '-';
}

/* Does text[q:] start with lit? (q <= n always) */
static inline int at(const uchar *s, Py_ssize_t q, Py_ssize_t n, const char *lit, Py_ssize_t len)
{
    return n - q >= len && memcmp(s + q, lit, (size_t)len) == 0;
}
#define AT(lit) at(s, q, n, lit, (Py_ssize_t)sizeof(lit) - 1)

/* The end of a run of chars for which ok() holds, from q. */
#define RUN(r, q, ok)                         \
    do {                                      \
        (r) = (q);                            \
        while ((r) < n && ok(s[(r)])) (r)++;  \
    } while (0)

/* _QBODY from q (just after the opening quote): no newline, a backslash takes the next char
 * unless that is a newline. Returns the offset of the closing quote, or -1. */
static Py_ssize_t qbody(const uchar *s, Py_ssize_t q, Py_ssize_t n, int *esc)
{
    while (q < n) {
        uchar c = s[q];
        if (c == '"')
            return q;
        if (c == '\n')
            return -1;
        if (c == '\\') {
            if (q + 1 >= n || s[q + 1] == '\n')
                return -1;
            *esc = 1;
            q += 2;
        }
        else
            q++;
    }
    return -1;
}

/* `"QBODY";\n` at q: the body's span and the offset after the line, or -1. */
static Py_ssize_t quoted_line(const uchar *s, Py_ssize_t q, Py_ssize_t n, Span *body, int *esc)
{
    Py_ssize_t c;
    if (q >= n || s[q] != '"')
        return -1;
    c = qbody(s, q + 1, n, esc);
    if (c < 0 || !at(s, c + 1, n, ";\n", 2))
        return -1;
    body->a = q + 1;
    body->b = c;
    return c + 3;
}

/* _TIME at q: `D YYYY/MM/DD HH:MM:SS;\n` (D a digit) or `never;\n`. */
static Py_ssize_t time_stmt(const uchar *s, Py_ssize_t q, Py_ssize_t n, Py_ssize_t *date)
{
    static const char form[] = "0 0000/00/00 00:00:00;\n"; /* '0': any digit */
    Py_ssize_t i, len = (Py_ssize_t)sizeof(form) - 1;
    if (AT("never;\n")) {
        *date = NEVER;
        return q + 7;
    }
    if (n - q < len)
        return -1;
    for (i = 0; i < len; i++)
        if (form[i] == '0' ? !is_digit(s[q + i]) : s[q + i] != (uchar)form[i])
            return -1;
    *date = q + 2;
    return q + len;
}

/* `  STATEWORD STATE;\n` after the prefix: [a-z-]+ then ";\n". */
static inline int is_state(uchar c) { return is_lower(c) || c == '-'; }
static Py_ssize_t state_word(const uchar *s, Py_ssize_t q, Py_ssize_t n, Span *out)
{
    Py_ssize_t r;
    RUN(r, q, is_state);
    if (r == q || !at(s, r, n, ";\n", 2))
        return -1;
    out->a = q;
    out->b = r;
    return r + 2;
}

/* One `  set NAME = VALUE;\n` line at q (prefix included); the offset after it, or -1.
 * VALUE: "QBODY" | [0-9a-fA-F:]+ | %-?\d+ | true | false. */
static inline int is_hexlist(uchar c) { return is_hex(c) || c == ':'; }
static Py_ssize_t set_line(const uchar *s, Py_ssize_t q, Py_ssize_t n)
{
    Py_ssize_t r;
    Span body;
    int esc = 0;
    if (!AT("  set "))
        return -1;
    q += 6;
    RUN(r, q, is_setname);
    if (r == q || !at(s, r, n, " = ", 3))
        return -1;
    q = r + 3;
    if (q < n && s[q] == '"')
        return quoted_line(s, q, n, &body, &esc);
    RUN(r, q, is_hexlist);
    if (r > q && at(s, r, n, ";\n", 2))
        return r + 2;
    if (q < n && s[q] == '%') {
        Py_ssize_t d = q + 1;
        if (d < n && s[d] == '-')
            d++;
        RUN(r, d, is_digit);
        if (r > d && at(s, r, n, ";\n", 2))
            return r + 2;
    }
    if (AT("true;\n"))
        return q + 6;
    if (AT("false;\n"))
        return q + 7;
    return -1;
}

/* `  option agent.[a-z-]+ [^;\n]*;\n` at q. */
static Py_ssize_t option_line(const uchar *s, Py_ssize_t q, Py_ssize_t n)
{
    Py_ssize_t r;
    if (!AT("  option agent."))
        return -1;
    q += 15;
    RUN(r, q, is_state);
    if (r == q || r >= n || s[r] != ' ')
        return -1;
    for (q = r + 1; q < n && s[q] != ';' && s[q] != '\n'; q++)
        ;
    return at(s, q, n, ";\n", 2) ? q + 2 : -1;
}

/* `  on [a-z ]+ {\n`, lines indented by four or more, then `  }\n`. */
static inline int is_onword(uchar c) { return is_lower(c) || c == ' '; }
static Py_ssize_t on_block(const uchar *s, Py_ssize_t q, Py_ssize_t n)
{
    Py_ssize_t r;
    if (!AT("  on "))
        return -1;
    q += 5;
    RUN(r, q, is_onword);
    /* [a-z ]+ then " {": the run must end in the space that precedes the brace */
    if (r - q < 2 || s[r - 1] != ' ' || !at(s, r, n, "{\n", 2))
        return -1;
    q = r + 2;
    while (AT("    ")) {
        const uchar *nl = memchr(s + q + 4, '\n', (size_t)(n - q - 4));
        if (nl == NULL)
            break;
        q = (nl - s) + 1;
    }
    return AT("  }\n") ? q + 4 : -1;
}

/* _FAST at p, where text[p:] starts with "lease " at the start of a line. Each statement
 * starts with its own words, so an optional one that is there but malformed can only make
 * the whole block fail: one pass decides what the backtracking regex decides. */
static inline int is_ipchar(uchar c) { return is_digit(c) || c == '.'; }
static int match_block(const uchar *s, Py_ssize_t p, Py_ssize_t n, Block *b)
{
    Py_ssize_t q = p + 6, r, e;
    int i;

    /* [0-9.]{7,15} then " {\n" */
    for (r = q; r < n && r - q <= 15 && is_ipchar(s[r]); r++)
        ;
    if (r - q < 7 || r - q > 15 || !at(s, r, n, " {\n", 3))
        return 0;
    b->ip.a = q;
    b->ip.b = r;
    q = r + 3;

    for (i = 0; i < 6; i++) {
        Py_ssize_t len = TIME_WORD_LEN[i];
        b->time[i] = ABSENT;
        if (at(s, q, n, TIME_WORD[i], len)) {
            if ((e = time_stmt(s, q + len, n, &b->time[i])) < 0)
                return 0;
            q = e;
        }
    }

    if (!AT("  binding state ") || (e = state_word(s, q + 16, n, &b->state)) < 0)
        return 0;
    q = e;
    b->next.a = b->rewind.a = b->mac.a = b->uid.a = b->host.a = ABSENT;
    if (AT("  next binding state ")) {
        if ((e = state_word(s, q + 21, n, &b->next)) < 0)
            return 0;
        q = e;
    }
    if (AT("  rewind binding state ")) {
        if ((e = state_word(s, q + 23, n, &b->rewind)) < 0)
            return 0;
        q = e;
    }
    if (AT("  hardware ethernet ")) {
        static const char form[] = "00:00:00:00:00:00;\n"; /* '0': [0-9a-f] */
        Py_ssize_t len = (Py_ssize_t)sizeof(form) - 1;
        q += 20;
        if (n - q < len)
            return 0;
        for (i = 0; i < len; i++)
            if (form[i] == '0' ? !is_lhex(s[q + i]) : s[q + i] != (uchar)form[i])
                return 0;
        b->mac.a = q;
        b->mac.b = q + 17;
        q += len;
    }
    b->uid_esc = b->host_esc = 0;
    if (AT("  uid \"")) {
        if ((e = quoted_line(s, q + 6, n, &b->uid, &b->uid_esc)) < 0)
            return 0;
        q = e;
    }
    b->sets = q;
    for (b->nsets = 0; (e = set_line(s, q, n)) >= 0; b->nsets++)
        q = e;
    b->opts = q;
    for (b->nopts = 0; (e = option_line(s, q, n)) >= 0; b->nopts++)
        q = e;
    if (AT("  client-hostname \"")) {
        if ((e = quoted_line(s, q + 18, n, &b->host, &b->host_esc)) < 0)
            return 0;
        q = e;
    }
    while ((e = on_block(s, q, n)) >= 0)
        q = e;
    if (q >= n || s[q] != '}')
        return 0;
    q++;
    if (q < n && s[q] == '\n')
        q++;
    b->end = q;
    return 1;
}

/* --- values -------------------------------------------------------------------------------- */

/* _IPV4: four dot-separated decimals 0-255 without leading zeros. */
static int valid_ipv4(const uchar *s, Py_ssize_t a, Py_ssize_t b)
{
    int parts = 0;
    while (parts < 4) {
        Py_ssize_t d = a;
        int v = 0;
        while (a < b && is_digit(s[a]) && a - d < 3)
            v = v * 10 + (s[a++] - '0');
        if (a == d || v > 255 || (a - d > 1 && s[d] == '0'))
            return 0;
        parts++;
        if (a == b)
            break;
        if (s[a] != '.')
            return 0;
        a++;
    }
    return parts == 4 && a == b;
}

static int is_leap(long y) { return y % 4 == 0 && (y % 100 != 0 || y % 400 == 0); }

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian), as calendar.timegm counts. */
static long long days_from_civil(long y, long m, long d)
{
    long era, yoe, doy, doe;
    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return (long long)era * 146097 + doe - 719468;
}

static long digits(const uchar *p, int k)
{
    long v = 0;
    while (k--)
        v = v * 10 + (*p++ - '0');
    return v;
}

/* "YYYY/MM/DD HH:MM:SS" (already known to be digits there) -> unix seconds, as _MINUTES and
 * _SECS compute it; 0 when there is no such time (Python raises ValueError there). */
static int time_value(const uchar *t, long long *out)
{
    static const int mdays[13] = {0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    long y = digits(t, 4), mo = digits(t + 5, 2), d = digits(t + 8, 2);
    long h = digits(t + 11, 2), mi = digits(t + 14, 2), sec = digits(t + 17, 2);
    if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo] + (mo == 2 && is_leap(y)) || h > 23 ||
        mi > 59 || sec > 60 || y < 1) /* year 0: datetime.date refuses it in timegm */
        return 0;
    *out = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec;
    return 1;
}

/* _unquote's bytes of the body text[a:b] (dhcpd's escapes: \t \r \n \b, \NNN octal, \xHH, else
 * the char). Writes to out unless it is NULL; returns the length either way. */
static Py_ssize_t unescape(const uchar *s, Py_ssize_t a, Py_ssize_t b, char *out)
{
    Py_ssize_t k = 0;
    while (a < b) {
        unsigned v = s[a++];
        if (v == '\\' && a < b) {
            uchar c = s[a++];
            if (c == 'x' && a < b && is_hex(s[a])) {
                v = (unsigned)hex_value(s[a++]);
                if (a < b && is_hex(s[a]))
                    v = v * 16 + (unsigned)hex_value(s[a++]);
            }
            else if (c >= '0' && c <= '7') {
                int i;
                v = c - '0';
                for (i = 0; i < 2 && a < b && s[a] >= '0' && s[a] <= '7'; i++)
                    v = v * 8 + (s[a++] - '0');
                v &= 0xFF; /* dhcpd keeps it in a char */
            }
            else
                v = c == 't' ? '\t' : c == 'r' ? '\r' : c == 'n' ? '\n' : c == 'b' ? '\b' : c;
        }
        if (out != NULL)
            out[k] = (char)v;
        k++;
    }
    return k;
}

static PyObject *unquote(const uchar *s, Span body, int esc)
{
    PyObject *bytes;
    Py_ssize_t len;
    if (!esc)
        return PyBytes_FromStringAndSize((const char *)s + body.a, body.b - body.a);
    len = unescape(s, body.a, body.b, NULL);
    bytes = PyBytes_FromStringAndSize(NULL, len);
    if (bytes != NULL)
        unescape(s, body.a, body.b, PyBytes_AS_STRING(bytes));
    return bytes;
}

/* Strings of one lease that others in it may equal (the MAC and a `set leasedns-mac`, a
 * `set leasedns-name` and client-hostname): an equal one is shared, not copied. Borrowed. */
#define POOL 8
typedef struct {
    PyObject *str[POOL];
    int n;
} Pool;

static PyObject *pool_find(Pool *pool, const uchar *p, Py_ssize_t len)
{
    int i;
    for (i = 0; i < pool->n; i++) {
        PyObject *o = pool->str[i];
        /* only ASCII ones: there, the raw bytes and every decoding of them agree */
        if (PyUnicode_IS_ASCII(o) && PyUnicode_GET_LENGTH(o) == len &&
            memcmp(PyUnicode_1BYTE_DATA(o), p, (size_t)len) == 0) {
            Py_INCREF(o);
            return o;
        }
    }
    return NULL;
}

static void pool_add(Pool *pool, PyObject *o)
{
    if (pool->n < POOL)
        pool->str[pool->n++] = o;
}

/* A str of text[a:b] as written (latin-1, one char per byte), shared from the pool if equal. */
static PyObject *raw_str(const uchar *s, Span sp, Pool *pool)
{
    PyObject *o = pool_find(pool, s + sp.a, sp.b - sp.a);
    if (o == NULL) {
        o = PyUnicode_DecodeLatin1((const char *)s + sp.a, sp.b - sp.a, NULL);
        if (o != NULL)
            pool_add(pool, o);
    }
    return o;
}

/* _text: a quoted string's body as UTF-8 with surrogateescape. */
static PyObject *text_str(const uchar *s, Span body, int esc, Pool *pool)
{
    PyObject *o, *bytes;
    if (!esc) {
        if ((o = pool_find(pool, s + body.a, body.b - body.a)) != NULL)
            return o;
        o = PyUnicode_DecodeUTF8((const char *)s + body.a, body.b - body.a, "surrogateescape");
    }
    else {
        if ((bytes = unquote(s, body, 1)) == NULL)
            return NULL;
        o = PyUnicode_DecodeUTF8(PyBytes_AS_STRING(bytes), PyBytes_GET_SIZE(bytes),
                                 "surrogateescape");
        Py_DECREF(bytes);
    }
    if (o != NULL)
        pool_add(pool, o);
    return o;
}

/* State names, set names and option names: a few distinct words repeated in every lease,
 * kept once per scan() call. Owned references. */
#define WORDS 32
typedef struct {
    PyObject *str[WORDS];
    int n;
} Words;

static PyObject *word_at(Words *w, const uchar *p, Py_ssize_t len)
{
    PyObject *o;
    int i;
    for (i = 0; i < w->n; i++) {
        o = w->str[i];
        if (PyUnicode_GET_LENGTH(o) == len &&
            memcmp(PyUnicode_1BYTE_DATA(o), p, (size_t)len) == 0) {
            Py_INCREF(o);
            return o;
        }
    }
    o = PyUnicode_DecodeLatin1((const char *)p, len, NULL);
    if (o != NULL && w->n < WORDS) {
        Py_INCREF(o);
        w->str[w->n++] = o;
    }
    return o;
}

static PyObject *word(Words *w, const uchar *s, Span sp)
{
    return word_at(w, s + sp.a, sp.b - sp.a);
}

/* The binding states dhcpd knows and the state it reads each as (_STATES in leases.py):
 * `bootp` and `reserved` are active. Any other word makes dhcpd drop the block. */
static const char *const STATE_WORD[9] = {
    "abandoned", "active", "backup", "expired", "free", "released", "reset", "bootp", "reserved"};
static const size_t STATE_LEN[9] = {9, 6, 6, 7, 4, 8, 5, 5, 8};
static const char *const STATE_AS[9] = {
    "abandoned", "active", "backup", "expired", "free", "released", "reset", "active", "active"};

/* The state text[sp] is read as, or NULL when dhcpd knows no such state. */
static const char *state_as(const uchar *s, Span sp)
{
    size_t len = (size_t)(sp.b - sp.a);
    int i;
    for (i = 0; i < 9; i++)
        if (STATE_LEN[i] == len && memcmp(s + sp.a, STATE_WORD[i], len) == 0)
            return STATE_AS[i];
    return NULL;
}

/* A state that state_as() found, as a str shared through w. */
static PyObject *state_str(Words *w, const char *state)
{
    return word_at(w, (const uchar *)state, (Py_ssize_t)strlen(state));
}

static PyObject *none(void)
{
    Py_INCREF(Py_None);
    return Py_None;
}

/* `  set NAME = VALUE;\n` lines (already matched) -> ((name, value), ...), _set_value's way. */
static PyObject *set_vars(const uchar *s, Py_ssize_t n, const Block *b, Words *w, Pool *pool)
{
    PyObject *tuple = PyTuple_New(b->nsets);
    Py_ssize_t q = b->sets, i;
    if (tuple == NULL)
        return NULL;
    for (i = 0; i < b->nsets; i++) {
        Span name, value;
        PyObject *k, *v, *item;
        int esc = 0, quoted;
        name.a = q + 6;
        RUN(name.b, name.a, is_setname);
        q = name.b + 3;
        if ((quoted = s[q] == '"')) {
            value.a = q + 1;
            value.b = qbody(s, value.a, n, &esc);
            q = value.b + 3;
        }
        else {
            value.a = q;
            for (value.b = q; s[value.b] != ';'; value.b++)
                ;
            q = value.b + 2;
        }
        k = word(w, s, name);
        v = k == NULL  ? NULL
            : quoted ? text_str(s, value, esc, pool)
                     : raw_str(s, value, pool);
        item = v == NULL ? NULL : PyTuple_New(2);
        if (item == NULL) {
            Py_XDECREF(k);
            Py_XDECREF(v);
            Py_DECREF(tuple);
            return NULL;
        }
        PyTuple_SET_ITEM(item, 0, k);
        PyTuple_SET_ITEM(item, 1, v);
        PyTuple_SET_ITEM(tuple, i, item);
    }
    return tuple;
}

/* `  option agent.NAME VALUE;\n` lines -> (("agent.NAME", "VALUE"), ...), as written. */
static PyObject *options(const uchar *s, const Block *b, Words *w)
{
    PyObject *tuple = PyTuple_New(b->nopts);
    Py_ssize_t q = b->opts, i;
    if (tuple == NULL)
        return NULL;
    for (i = 0; i < b->nopts; i++) {
        Span name, value;
        PyObject *k, *v, *item;
        name.a = q + 9;
        for (name.b = name.a; s[name.b] != ' '; name.b++)
            ;
        value.a = name.b + 1;
        for (value.b = value.a; s[value.b] != ';'; value.b++)
            ;
        q = value.b + 2;
        k = word(w, s, name);
        v = k == NULL ? NULL
                      : PyUnicode_DecodeLatin1((const char *)s + value.a, value.b - value.a, NULL);
        item = v == NULL ? NULL : PyTuple_New(2);
        if (item == NULL) {
            Py_XDECREF(k);
            Py_XDECREF(v);
            Py_DECREF(tuple);
            return NULL;
        }
        PyTuple_SET_ITEM(item, 0, k);
        PyTuple_SET_ITEM(item, 1, v);
        PyTuple_SET_ITEM(tuple, i, item);
    }
    return tuple;
}

/* The Lease of a matched block. Returns 1 with *out set, 0 when a value is impossible (a date
 * like 2024/02/30, an address like 1.2.3.999, a binding state dhcpd does not know: the general
 * parser says what is wrong), -1 on error (an exception is set). */
static int make_lease(const uchar *s, Py_ssize_t n, const Block *b, PyTypeObject *type,
                      PyObject *path, Py_ssize_t line, Words *w, PyObject **out)
{
    PyObject *f[NFIELDS] = {NULL};
    PyObject *lease;
    long long secs[6];
    const char *state, *next = NULL, *rewind = NULL;
    Pool pool;
    int i, j;

    if (!valid_ipv4(s, b->ip.a, b->ip.b))
        return 0;
    if ((state = state_as(s, b->state)) == NULL ||
        (b->next.a != ABSENT && (next = state_as(s, b->next)) == NULL) ||
        (b->rewind.a != ABSENT && (rewind = state_as(s, b->rewind)) == NULL))
        return 0;
    for (i = 0; i < 6; i++)
        if (b->time[i] >= 0 && !time_value(s + b->time[i], &secs[i]))
            return 0;

    pool.n = 0;
    if ((f[F_IP] = PyUnicode_DecodeLatin1((const char *)s + b->ip.a, b->ip.b - b->ip.a, NULL)) ==
        NULL)
        goto error;
    pool_add(&pool, f[F_IP]);
    for (i = 0; i < 6; i++) {
        PyObject **slot = &f[TIME_FIELD[i]];
        if (b->time[i] < 0) {
            *slot = none();
            continue;
        }
        /* ends and tstp, starts and cltt are mostly equal: one int object for both */
        for (j = 0; j < i; j++)
            if (b->time[j] >= 0 && secs[j] == secs[i])
                break;
        if (j < i) {
            *slot = f[TIME_FIELD[j]];
            Py_INCREF(*slot);
        }
        else if ((*slot = PyLong_FromLongLong(secs[i])) == NULL)
            goto error;
    }
    if ((f[F_STATE] = state_str(w, state)) == NULL ||
        (f[F_NEXT] = next == NULL ? none() : state_str(w, next)) == NULL ||
        (f[F_REWIND] = rewind == NULL ? none() : state_str(w, rewind)) == NULL ||
        (f[F_MAC] = b->mac.a == ABSENT ? none() : raw_str(s, b->mac, &pool)) == NULL ||
        (f[F_UID] = b->uid.a == ABSENT ? none() : unquote(s, b->uid, b->uid_esc)) == NULL ||
        (f[F_SETS] = set_vars(s, n, b, w, &pool)) == NULL ||
        (f[F_OPTS] = options(s, b, w)) == NULL ||
        (f[F_HOST] = b->host.a == ABSENT ? none() : text_str(s, b->host, b->host_esc, &pool)) ==
            NULL ||
        (f[F_LINE] = PyLong_FromSsize_t(line)) == NULL)
        goto error;
    f[F_ABANDONED] = strcmp(state, "abandoned") == 0 ? Py_True : Py_False;
    Py_INCREF(f[F_ABANDONED]);
    f[F_PATH] = path;
    Py_INCREF(path);

    /* what tuple.__new__(Lease, ...) does, without a call through Python */
    if ((lease = type->tp_alloc(type, NFIELDS)) == NULL)
        goto error;
    for (i = 0; i < NFIELDS; i++)
        PyTuple_SET_ITEM(lease, i, f[i]);
    *out = lease;
    return 1;

error:
    for (i = 0; i < NFIELDS; i++)
        Py_XDECREF(f[i]);
    return -1;
}

/* The dict's `pop` then set, as _Acc.add_lease does: the dict keeps the winners' order. */
static int add_lease(PyObject *leases, PyObject *lease)
{
    PyObject *ip = PyTuple_GET_ITEM(lease, F_IP);
    /* one lookup when the address is new, which it nearly always is */
    PyObject *old = PyDict_SetDefault(leases, ip, lease);
    if (old == NULL)
        return -1;
    if (old == lease)
        return 0;
    if (PyDict_DelItem(leases, ip) < 0)
        return -1;
    return PyDict_SetItem(leases, ip, lease);
}

/* --- scan() -------------------------------------------------------------------------------- */

static Py_ssize_t count_nl(const uchar *s, Py_ssize_t a, Py_ssize_t b)
{
    Py_ssize_t k = 0;
    for (; a < b; a++)
        k += s[a] == '\n';
    return k;
}

static int blank(const uchar *s, Py_ssize_t a, Py_ssize_t b)
{
    for (; a < b; a++)
        if (!Py_UNICODE_ISSPACE(s[a]))
            return 0;
    return 1;
}

PyDoc_STRVAR(scan_doc,
"scan(text, pos, line_pos, line, leases, path, lease_type)\n"
"--\n\n"
"Read the blocks in dhcpd's own layout from text[pos:] into the dict `leases` (ip -> Lease,\n"
"the last block wins) until one needs the general parser.\n\n"
"Returns (a, b, resume, line_pos, line): when a < b, the general parser reads text[a:b] and\n"
"scan goes on from resume; when a == b, resume is where the last block read ends. line_pos\n"
"and line are _Acc's line counter after the blocks read. None when text is not a str of\n"
"one-byte chars (the regex path reads it then).");

static PyObject *scan(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *text, *leases, *path, *result = NULL;
    PyTypeObject *type;
    Py_ssize_t n, pos, line_pos, line, p, done;
    Py_ssize_t a = 0, b = 0;
    const uchar *s;
    Words words;
    int i;
    (void)module;

    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError, "scan() takes 7 arguments");
        return NULL;
    }
    text = args[0];
    leases = args[4];
    path = args[5];
    type = (PyTypeObject *)args[6];
    if (!PyUnicode_Check(text) || !PyDict_CheckExact(leases) || !PyType_Check(args[6]) ||
        !PyType_IsSubtype(type, &PyTuple_Type) ||
        type->tp_basicsize != PyTuple_Type.tp_basicsize) {
        PyErr_SetString(PyExc_TypeError, "scan(str, int, int, int, dict, path, tuple type)");
        return NULL;
    }
    pos = PyLong_AsSsize_t(args[1]);
    line_pos = PyLong_AsSsize_t(args[2]);
    line = PyLong_AsSsize_t(args[3]);
    if (PyErr_Occurred())
        return NULL;
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(text) < 0)
        return NULL;
#endif
    if (PyUnicode_KIND(text) != PyUnicode_1BYTE_KIND)
        Py_RETURN_NONE;
    s = PyUnicode_1BYTE_DATA(text);
    n = PyUnicode_GET_LENGTH(text);
    if (pos < 0 || pos > n || line_pos < 0 || line_pos > n) {
        PyErr_SetString(PyExc_ValueError, "scan(): position out of range");
        return NULL;
    }

    words.n = 0;
    done = p = pos;
    for (;;) {
        Block blk;
        const uchar *nl;
        /* finditer's next match: only at the start of a line, and only "lease " starts one */
        if (p > 0 && s[p - 1] != '\n') {
            if (p >= n || (nl = memchr(s + p, '\n', (size_t)(n - p))) == NULL)
                break;
            p = (nl - s) + 1;
        }
        if (n - p >= 6 && memcmp(s + p, "lease ", 6) == 0 && match_block(s, p, n, &blk)) {
            PyObject *lease = NULL;
            Py_ssize_t here;
            int made;
            if (p != done && !blank(s, done, p)) {
                a = done; /* what lies before this block is not blank: general parser */
                b = p;
                done = p;
                break;
            }
            if (p >= line_pos) { /* _Acc.line_at */
                line += count_nl(s, line_pos, p);
                line_pos = p;
                here = line;
            }
            else
                here = line - count_nl(s, p, line_pos);
            made = make_lease(s, n, &blk, type, path, here, &words, &lease);
            if (made < 0)
                goto error;
            if (made == 0) {
                a = p; /* an impossible value: the general parser says which */
                b = done = blk.end;
                break;
            }
            if (add_lease(leases, lease) < 0) {
                Py_DECREF(lease);
                goto error;
            }
            Py_DECREF(lease);
            done = p = blk.end;
            continue;
        }
        if (p >= n || (nl = memchr(s + p, '\n', (size_t)(n - p))) == NULL)
            break;
        p = (nl - s) + 1;
    }
    result = Py_BuildValue("(nnnnn)", a, b, done, line_pos, line);
error:
    for (i = 0; i < words.n; i++)
        Py_DECREF(words.str[i]);
    return result;
}

/* --- json_lines() -------------------------------------------------------------------------- */

/* What json's encode_basestring_ascii writes as is: printable ASCII but the quote and the
 * backslash. Everything else is escaped, so every line is ASCII whatever a client sent. */
static inline int json_plain(Py_UCS4 c) { return c >= ' ' && c <= '~' && c != '\\' && c != '"'; }

static inline int json_short_escape(Py_UCS4 c)
{
    return c == '\\' || c == '"' || c == '\b' || c == '\f' || c == '\n' || c == '\r' ||
           c == '\t';
}

/* The length of encode_basestring_ascii(o), quotes included. */
static Py_ssize_t json_str_len(PyObject *o)
{
    int kind = PyUnicode_KIND(o);
    const void *d = PyUnicode_DATA(o);
    Py_ssize_t i, n = PyUnicode_GET_LENGTH(o), len = 2 + n;
    for (i = 0; i < n; i++) {
        Py_UCS4 c = PyUnicode_READ(kind, d, i);
        if (!json_plain(c)) /* \X is one more char, \uXXXX five, a surrogate pair eleven */
            len += json_short_escape(c) ? 1 : c >= 0x10000 ? 11 : 5;
    }
    return len;
}

static char *json_u4(char *w, Py_UCS4 c)
{
    static const char hex[] = "0123456789abcdef"; /* json writes lowercase */
    *w++ = '\\';
    *w++ = 'u';
    *w++ = hex[(c >> 12) & 0xf];
    *w++ = hex[(c >> 8) & 0xf];
    *w++ = hex[(c >> 4) & 0xf];
    *w++ = hex[c & 0xf];
    return w;
}

/* encode_basestring_ascii(o) at w (json_str_len(o) chars); returns the end. */
static char *json_str_put(char *w, PyObject *o)
{
    int kind = PyUnicode_KIND(o);
    const void *d = PyUnicode_DATA(o);
    Py_ssize_t i, n = PyUnicode_GET_LENGTH(o);
    *w++ = '"';
    for (i = 0; i < n; i++) {
        Py_UCS4 c = PyUnicode_READ(kind, d, i);
        if (json_plain(c))
            *w++ = (char)c;
        else if (json_short_escape(c)) {
            *w++ = '\\';
            *w++ = c == '\b' ? 'b' : c == '\f' ? 'f' : c == '\n' ? 'n' : c == '\r' ? 'r'
                 : c == '\t' ? 't' : (char)c;
        }
        else if (c >= 0x10000) { /* as UTF-16 does it: a surrogate pair */
            w = json_u4(w, 0xD800 | ((c - 0x10000) >> 10));
            w = json_u4(w, 0xDC00 | ((c - 0x10000) & 0x3FF));
        }
        else
            w = json_u4(w, c);
    }
    *w++ = '"';
    return w;
}

/* str(v) of an int that fits a long long, at w; returns its length. */
static Py_ssize_t json_int(char *w, long long v)
{
    char digits[24];
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    Py_ssize_t k = 0, len;
    do
        digits[k++] = (char)('0' + u % 10);
    while ((u /= 10) != 0);
    len = k + (v < 0);
    if (v < 0)
        *w++ = '-';
    while (k > 0)
        *w++ = digits[--k];
    return len;
}

/* socket.inet_aton(ip) as a number, for the four decimals 0-255 (no leading zeros: there
 * inet_aton reads octal) that every Lease.ip is. -1 for anything else. */
static long long ip_key(PyObject *ip)
{
    const uchar *s = PyUnicode_1BYTE_DATA(ip);
    Py_ssize_t n = PyUnicode_GET_LENGTH(ip);
    long long key = 0;
    if (!valid_ipv4(s, 0, n))
        return -1;
    while (n > 0) {
        long v = 0;
        Py_ssize_t d = 0;
        while (d < n && s[d] != '.')
            v = v * 10 + (s[d++] - '0');
        key = key * 256 + v;
        s += d + (d < n);
        n -= d + (d < n);
    }
    return key;
}

/* A field json_lines() writes as it is (format_json does, the parser only makes ASCII there):
 * an ASCII str, or None where `none_ok`. */
static int plain_field(PyObject *o, int none_ok)
{
    return (none_ok && o == Py_None) || (PyUnicode_CheckExact(o) && PyUnicode_IS_ASCII(o));
}

/* starts or ends as the line has it, at buf (24 chars): null, or the digits of an int that
 * fits a long long (*v gets it). Returns the length, or -1 for anything else. */
static Py_ssize_t time_text(PyObject *o, char *buf, long long *v)
{
    int overflow;
    if (o == Py_None) {
        memcpy(buf, "null", 4);
        return 4;
    }
    if (!PyLong_CheckExact(o))
        return -1;
    *v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (overflow || (*v == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        return -1;
    }
    return json_int(buf, *v);
}

static char *put_lit(char *w, const char *lit, size_t len)
{
    memcpy(w, lit, len);
    return w + len;
}
#define PUT(lit) (w = put_lit(w, lit, sizeof(lit) - 1))

static char *put_ascii(char *w, PyObject *o)
{
    Py_ssize_t len = PyUnicode_GET_LENGTH(o);
    memcpy(w, PyUnicode_1BYTE_DATA(o), (size_t)len);
    return w + len;
}

/* The line's text around the fields, as format_json writes it; J_FIXED is their length (the
 * sizes less the eight NULs). */
static const char J_IP[] = "{\"ip\": \"", J_MAC[] = "\", \"mac\": ", J_STATE[] = ", \"state\": \"",
                  J_STARTS[] = "\", \"starts\": ", J_ENDS[] = ", \"ends\": ",
                  J_HOST[] = ", \"client-hostname\": ", J_FILE[] = ", \"file\": ", J_END[] = "}\n";
#define J_FIXED                                                                              \
    ((Py_ssize_t)(sizeof(J_IP) + sizeof(J_MAC) + sizeof(J_STATE) + sizeof(J_STARTS) +        \
                  sizeof(J_ENDS) + sizeof(J_HOST) + sizeof(J_FILE) + sizeof(J_END) - 8))

/* Stable sort of (address << 32 | index) by address: the index makes every item distinct and
 * keeps the order of equal addresses, so sorting the whole numbers is that stable sort. A
 * file dhcpd wrote in address order needs no pass at all; one it rewrote (by pool and state)
 * gets an LSD radix sort on the address bytes, skipping bytes all items share. */
static int sort_keys(unsigned long long *a, Py_ssize_t n)
{
    unsigned long long *tmp, *src = a, *dst;
    Py_ssize_t i, count[256];
    int shift;
    for (i = 1; i < n && a[i - 1] <= a[i]; i++)
        ;
    if (i >= n)
        return 0;
    if ((tmp = PyMem_Malloc((size_t)n * sizeof(*tmp))) == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    dst = tmp;
    for (shift = 32; shift < 64; shift += 8) {
        Py_ssize_t sum = 0;
        memset(count, 0, sizeof(count));
        for (i = 0; i < n; i++)
            count[(src[i] >> shift) & 0xFF]++;
        if (count[(src[0] >> shift) & 0xFF] == n)
            continue;
        for (i = 0; i < 256; i++) {
            Py_ssize_t c = count[i];
            count[i] = sum;
            sum += c;
        }
        for (i = 0; i < n; i++)
            dst[count[(src[i] >> shift) & 0xFF]++] = src[i];
        {
            unsigned long long *t = src;
            src = dst;
            dst = t;
        }
    }
    if (src != a)
        memcpy(a, src, (size_t)n * sizeof(*a));
    PyMem_Free(tmp);
    return 0;
}

PyDoc_STRVAR(json_lines_doc,
"json_lines(leases, lease_type, live_at=None)\n"
"--\n\n"
"cmd_leases.format_json(leases, live_at), byte for byte: a JSON object per lease and line,\n"
"sorted by address; with live_at, only of the leases in force then (leases.in_force).\n"
"None when a lease is not what the parser makes (a field of another type, an ip that is\n"
"not a plain dotted quad, a time beyond a long long): format_json does it then.");

static PyObject *json_lines(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *seq, *text = NULL, *result = NULL, *path = NULL;
    PyObject **items;
    PyTypeObject *type;
    unsigned long long *order = NULL;
    Py_ssize_t *start = NULL, n, i, m = 0, used = 0, cap, path_len = 0;
    char *path_at = NULL;
    long long now = 0;
    int live_only = nargs == 3 && args[2] != Py_None;
    (void)module;

    if (nargs < 2 || nargs > 3 || !PyList_CheckExact(args[0]) || !PyType_Check(args[1]) ||
        !PyType_IsSubtype((PyTypeObject *)args[1], &PyTuple_Type) ||
        ((PyTypeObject *)args[1])->tp_basicsize != PyTuple_Type.tp_basicsize ||
        (live_only && !PyLong_Check(args[2]))) {
        PyErr_SetString(PyExc_TypeError, "json_lines(list, tuple type, int | None = None)");
        return NULL;
    }
    if (live_only && (now = PyLong_AsLongLong(args[2])) == -1 && PyErr_Occurred())
        return NULL;
    seq = args[0];
    type = (PyTypeObject *)args[1];
    n = PyList_GET_SIZE(seq);
    items = PySequence_Fast_ITEMS(seq); /* nothing here runs Python code: the list stays put */
    cap = 160 * n + 64; /* a dhcpd lease's line is about that long; grown when not enough */
    if ((size_t)n >= (1ULL << 32) ||
        (order = PyMem_Malloc((size_t)(n + 1) * sizeof(*order))) == NULL ||
        (start = PyMem_Malloc((size_t)(n + 1) * sizeof(*start))) == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    if ((text = PyUnicode_New(cap, 127)) == NULL)
        goto done;

    /* One pass, in the order the leases come (the order they were read, so the order they
     * lie in memory: in address order nearly every lease would be a cache miss, and a pass to
     * measure the lines before one to write them costs as much again). */
    for (i = 0; i < n; i++) {
        PyObject *x = items[i], *ip, *mac, *state, *starts, *ends, *host, *file;
        long long key, v_starts, v_ends = 0;
        char t_starts[24], t_ends[24];
        Py_ssize_t len, len_starts, len_ends;
        char *w;
        if (!Py_IS_TYPE(x, type) || PyTuple_GET_SIZE(x) != NFIELDS)
            goto decline;
        ip = PyTuple_GET_ITEM(x, F_IP);
        mac = PyTuple_GET_ITEM(x, F_MAC);
        state = PyTuple_GET_ITEM(x, F_STATE);
        starts = PyTuple_GET_ITEM(x, F_STARTS);
        ends = PyTuple_GET_ITEM(x, F_ENDS);
        host = PyTuple_GET_ITEM(x, F_HOST);
        file = PyTuple_GET_ITEM(x, F_PATH);
        if (!plain_field(ip, 0) || !plain_field(mac, 1) || !plain_field(state, 0) ||
            (key = ip_key(ip)) < 0 || (len_starts = time_text(starts, t_starts, &v_starts)) < 0 ||
            (len_ends = time_text(ends, t_ends, &v_ends)) < 0 ||
            (host != Py_None && !PyUnicode_CheckExact(host)) || !PyUnicode_CheckExact(file))
            goto decline;
        /* leases.in_force: active, and not past its end */
        if (live_only && (PyUnicode_GET_LENGTH(state) != 6 ||
                          memcmp(PyUnicode_1BYTE_DATA(state), "active", 6) != 0 ||
                          (ends != Py_None && v_ends <= now)))
            continue;
        order[m] = (unsigned long long)key << 32 | (unsigned long long)m;
        if (file != path) { /* the leases of one file share its path object */
            path = file;
            path_at = NULL;
            path_len = json_str_len(file);
        }
        len = J_FIXED + PyUnicode_GET_LENGTH(ip) + PyUnicode_GET_LENGTH(state) +
              (mac == Py_None ? 4 : PyUnicode_GET_LENGTH(mac) + 2) + len_starts + len_ends +
              (host == Py_None ? 4 : json_str_len(host)) + path_len;
        if (used + len > cap) {
            Py_ssize_t at = path_at == NULL ? 0 : path_at - (char *)PyUnicode_1BYTE_DATA(text);
            cap = 2 * cap + len;
            if (PyUnicode_Resize(&text, cap) < 0)
                goto done;
            if (path_at != NULL)
                path_at = (char *)PyUnicode_1BYTE_DATA(text) + at;
        }
        start[m++] = used;
        w = (char *)PyUnicode_1BYTE_DATA(text) + used;
        PUT(J_IP);
        w = put_ascii(w, ip);
        PUT(J_MAC);
        if (mac == Py_None)
            PUT("null");
        else {
            *w++ = '"';
            w = put_ascii(w, mac);
            *w++ = '"';
        }
        PUT(J_STATE);
        w = put_ascii(w, state);
        PUT(J_STARTS);
        w = put_lit(w, t_starts, (size_t)len_starts);
        PUT(J_ENDS);
        w = put_lit(w, t_ends, (size_t)len_ends);
        PUT(J_HOST);
        w = host == Py_None ? put_lit(w, "null", 4) : json_str_put(w, host);
        PUT(J_FILE);
        if (path_at != NULL)
            w = put_lit(w, path_at, (size_t)path_len);
        else {
            path_at = w;
            w = json_str_put(w, file);
        }
        PUT(J_END);
        assert(w == (char *)PyUnicode_1BYTE_DATA(text) + used + len);
        used += len;
    }
    start[m] = used;

    if (sort_keys(order, m) < 0)
        goto done;
    for (i = 0; i < m && (order[i] & 0xFFFFFFFFULL) == (unsigned long long)i; i++)
        ;
    if (i == m) { /* already in address order: the text is the result */
        if (PyUnicode_Resize(&text, used) < 0)
            goto done;
        result = text;
        text = NULL;
        goto done;
    }
    if ((result = PyUnicode_New(used, 127)) != NULL) {
        char *w = (char *)PyUnicode_1BYTE_DATA(result);
        const char *r = (const char *)PyUnicode_1BYTE_DATA(text);
        for (i = 0; i < m; i++) {
            Py_ssize_t k = (Py_ssize_t)(order[i] & 0xFFFFFFFFULL);
            w = put_lit(w, r + start[k], (size_t)(start[k + 1] - start[k]));
        }
    }
    goto done;

decline:
    result = none();
done:
    Py_XDECREF(text);
    PyMem_Free(order);
    PyMem_Free(start);
    return result;
}

static PyMethodDef methods[] = {
    {"scan", (PyCFunction)(void (*)(void))scan, METH_FASTCALL, scan_doc},
    {"json_lines", (PyCFunction)(void (*)(void))json_lines, METH_FASTCALL, json_lines_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    .m_base = PyModuleDef_HEAD_INIT,
    .m_name = "leasedns.sources.dhcpd._leasescan",
    .m_doc = "The lease parser's fast path in C (optional; leasedns.sources.dhcpd.leases falls back to Python).",
    .m_size = 0,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__leasescan(void) { return PyModuleDef_Init(&module); }
