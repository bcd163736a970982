/*
 * jsoncheck.c — a strict JSON reader for the postbox command's end-to-end tests, so that
 * they need no python or jq.
 *
 *   pbx_jsoncheck [-c] [PATH...] < input
 *
 * reads one or more JSON documents (JSON Lines, or any whitespace between documents),
 * rejects anything that is not strict JSON (RFC 8259) with a message and exit status 1, and
 * then prints, for each document and each PATH, the value found there on a line of its own:
 * a string decoded to its bytes, a number, true, false or null as written, "<object>" or
 * "<array>", or "<missing>". A PATH is "." (the document) or keys and array indexes joined
 * by dots ("0.name"); a final "#" gives the number of members ("#", "items.#"). -c prints the
 * number of documents instead.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum kind { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ };

struct node {
    enum kind kind;
    char *text; /* decoded string, or the literal / number as written */
    size_t len;
    size_t n;
    struct node **kids;
    char **keys;
};

static const char *p, *end;

static void fail(const char *why)
{
    fprintf(stderr, "jsoncheck: %s at byte %ld\n", why, (long) (p - (end - strlen(end))));
    exit(1);
}

static void *xalloc(size_t n)
{
    void *m = calloc(1, n ? n : 1);
    if (!m) {
        fprintf(stderr, "jsoncheck: out of memory\n");
        exit(1);
    }
    return m;
}

static void skip_ws(void)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
}

static unsigned hex4(void)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++, p++) {
        if (p >= end || !isxdigit((unsigned char) *p))
            fail("bad \\u escape");
        v = v * 16 + (unsigned) (isdigit((unsigned char) *p) ? *p - '0' : (tolower(*p) - 'a' + 10));
    }
    return v;
}

static void put_utf8(char *out, size_t *n, unsigned cp)
{
    if (cp < 0x80) {
        out[(*n)++] = (char) cp;
    } else if (cp < 0x800) {
        out[(*n)++] = (char) (0xc0 | cp >> 6);
        out[(*n)++] = (char) (0x80 | (cp & 63));
    } else if (cp < 0x10000) {
        out[(*n)++] = (char) (0xe0 | cp >> 12);
        out[(*n)++] = (char) (0x80 | ((cp >> 6) & 63));
        out[(*n)++] = (char) (0x80 | (cp & 63));
    } else {
        out[(*n)++] = (char) (0xf0 | cp >> 18);
        out[(*n)++] = (char) (0x80 | ((cp >> 12) & 63));
        out[(*n)++] = (char) (0x80 | ((cp >> 6) & 63));
        out[(*n)++] = (char) (0x80 | (cp & 63));
    }
}

static char *parse_string(size_t *len)
{
    p++; /* the opening quote */
    char *out = xalloc((size_t) (end - p) + 1);
    size_t n = 0;
    for (;;) {
        if (p >= end)
            fail("unterminated string");
        unsigned char c = (unsigned char) *p++;
        if (c == '"')
            break;
        if (c < 0x20)
            fail("raw control character in string");
        if (c != '\\') {
            out[n++] = (char) c;
            continue;
        }
        if (p >= end)
            fail("unterminated escape");
        switch (*p++) {
        case '"':
            out[n++] = '"';
            break;
        case '\\':
            out[n++] = '\\';
            break;
        case '/':
            out[n++] = '/';
            break;
        case 'b':
            out[n++] = '\b';
            break;
        case 'f':
            out[n++] = '\f';
            break;
        case 'n':
            out[n++] = '\n';
            break;
        case 'r':
            out[n++] = '\r';
            break;
        case 't':
            out[n++] = '\t';
            break;
        case 'u': {
            unsigned cp = hex4();
            if (cp >= 0xd800 && cp < 0xdc00) {
                if (end - p < 6 || p[0] != '\\' || p[1] != 'u')
                    fail("lone surrogate");
                p += 2;
                unsigned lo = hex4();
                if (lo < 0xdc00 || lo > 0xdfff)
                    fail("bad surrogate pair");
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            } else if (cp >= 0xdc00 && cp <= 0xdfff) {
                fail("lone surrogate");
            }
            put_utf8(out, &n, cp);
            break;
        }
        default:
            fail("bad escape");
        }
    }
    *len = n;
    return out;
}

static struct node *parse_value(int depth);

static void add_kid(struct node *nd, struct node *kid, char *key)
{
    nd->kids = realloc(nd->kids, (nd->n + 1) * sizeof *nd->kids);
    nd->keys = realloc(nd->keys, (nd->n + 1) * sizeof *nd->keys);
    if (!nd->kids || !nd->keys)
        fail("out of memory");
    nd->kids[nd->n] = kid;
    nd->keys[nd->n] = key;
    nd->n++;
}

static struct node *parse_value(int depth)
{
    if (depth > 200)
        fail("nested too deeply");
    skip_ws();
    if (p >= end)
        fail("value expected");
    struct node *nd = xalloc(sizeof *nd);
    const char *start = p;
    if (*p == '{' || *p == '[') {
        int obj = *p == '{';
        nd->kind = obj ? J_OBJ : J_ARR;
        p++;
        skip_ws();
        if (p < end && *p == (obj ? '}' : ']')) {
            p++;
            return nd;
        }
        for (;;) {
            char *key = NULL;
            if (obj) {
                skip_ws();
                if (p >= end || *p != '"')
                    fail("object key expected");
                size_t kl;
                key = parse_string(&kl);
                skip_ws();
                if (p >= end || *p++ != ':')
                    fail("':' expected");
            }
            add_kid(nd, parse_value(depth + 1), key);
            skip_ws();
            if (p < end && *p == ',') {
                p++;
                continue;
            }
            if (p < end && *p == (obj ? '}' : ']')) {
                p++;
                return nd;
            }
            fail(obj ? "',' or '}' expected" : "',' or ']' expected");
        }
    }
    if (*p == '"') {
        nd->kind = J_STR;
        nd->text = parse_string(&nd->len);
        return nd;
    }
    static const char *const lits[] = {"true", "false", "null"};
    for (int i = 0; i < 3; i++) {
        size_t l = strlen(lits[i]);
        if ((size_t) (end - p) >= l && !memcmp(p, lits[i], l)) {
            p += l;
            nd->kind = i == 2 ? J_NULL : J_BOOL;
            nd->text = (char *) lits[i];
            nd->len = l;
            return nd;
        }
    }
    /* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
    if (p < end && *p == '-')
        p++;
    if (p < end && *p == '0')
        p++;
    else if (p < end && *p >= '1' && *p <= '9')
        while (p < end && isdigit((unsigned char) *p))
            p++;
    else
        fail("value expected");
    if (p < end && *p == '.') {
        p++;
        if (p >= end || !isdigit((unsigned char) *p))
            fail("digit expected after '.'");
        while (p < end && isdigit((unsigned char) *p))
            p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        if (p >= end || !isdigit((unsigned char) *p))
            fail("digit expected in exponent");
        while (p < end && isdigit((unsigned char) *p))
            p++;
    }
    nd->kind = J_NUM;
    nd->len = (size_t) (p - start);
    nd->text = xalloc(nd->len + 1);
    memcpy(nd->text, start, nd->len);
    return nd;
}

static void print_path(const struct node *nd, const char *path)
{
    char seg[256];
    while (nd && strcmp(path, ".") != 0 && *path) {
        size_t l = strcspn(path, ".");
        if (l >= sizeof seg)
            l = sizeof seg - 1;
        memcpy(seg, path, l);
        seg[l] = '\0';
        path += l + (path[l] == '.');
        if (!strcmp(seg, "#") && !*path) {
            if (nd->kind != J_ARR && nd->kind != J_OBJ)
                break;
            printf("%zu\n", nd->n);
            return;
        }
        const struct node *next = NULL;
        if (nd->kind == J_OBJ) {
            for (size_t i = 0; i < nd->n; i++)
                if (!strcmp(nd->keys[i], seg))
                    next = nd->kids[i];
        } else if (nd->kind == J_ARR && isdigit((unsigned char) seg[0])) {
            size_t i = strtoul(seg, NULL, 10);
            if (i < nd->n)
                next = nd->kids[i];
        }
        nd = next;
    }
    if (!nd || (*path && strcmp(path, ".") != 0))
        printf("<missing>\n");
    else if (nd->kind == J_OBJ)
        printf("<object>\n");
    else if (nd->kind == J_ARR)
        printf("<array>\n");
    else {
        fwrite(nd->text, 1, nd->len, stdout);
        putchar('\n');
    }
}

static void free_node(struct node *nd)
{
    for (size_t i = 0; i < nd->n; i++) {
        free_node(nd->kids[i]);
        free(nd->keys[i]);
    }
    if (nd->kind == J_STR || nd->kind == J_NUM)
        free(nd->text);
    free(nd->kids);
    free(nd->keys);
    free(nd);
}

int main(int argc, char **argv)
{
    size_t cap = 1 << 16, n = 0;
    char *buf = xalloc(cap + 1);
    size_t r;
    while ((r = fread(buf + n, 1, cap - n, stdin)) > 0) {
        n += r;
        if (n == cap) {
            cap *= 2;
            buf = realloc(buf, cap + 1);
            if (!buf)
                fail("out of memory");
        }
    }
    buf[n] = '\0';
    if (memchr(buf, '\0', n))
        fail("NUL byte in input");
    p = buf;
    end = buf + n;
    int count_only = argc > 1 && !strcmp(argv[1], "-c");
    size_t docs = 0;
    struct node **all = NULL;
    for (;;) {
        skip_ws();
        if (p >= end)
            break;
        all = realloc(all, (docs + 1) * sizeof *all);
        if (!all)
            fail("out of memory");
        all[docs++] = parse_value(0);
    }
    if (count_only)
        printf("%zu\n", docs);
    for (size_t d = 0; d < docs; d++) {
        for (int i = 1; i < argc && !count_only; i++)
            print_path(all[d], argv[i]);
        free_node(all[d]);
    }
    free(all);
    free(buf);
    return 0;
}
