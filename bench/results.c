/*
 * results.c — the store of everything a run measured: one record per figure per repetition,
 * the depth each transport had, latency distributions for the plot, notes and errors.
 *
 * Cases only add to it; the report reads it back. Keeping raw per-repetition values (rather
 * than summaries) is what lets the report compute every ratio within a repetition first and
 * take the median afterwards, as the method in docs/performance.md says.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

static struct res_record *recs;
static size_t nrecs, caprecs;
static struct res_depth_rec *depths;
static size_t ndepths, capdepths;
static struct res_dist_rec *dists;
static size_t ndists, capdists;
static char **notes;
static size_t nnotes, capnotes;
static char **errors;
static size_t nerrors, caperrors;

static void *grow(void *p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return p;
    size_t c = *cap ? *cap * 2 : 64;
    while (c < need)
        c *= 2;
    void *q = realloc(p, c * elem);
    if (!q) {
        fprintf(stderr, "pbx_bench: out of memory\n");
        exit(2);
    }
    *cap = c;
    return q;
}

static void copy_name(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src ? src : "");
}

void res_add(const char *case_name, const char *tr, size_t size, const char *layout,
             const char *metric, double value, const char *unit, int rep)
{
    recs = grow(recs, &caprecs, nrecs + 1, sizeof(*recs));
    struct res_record *r = &recs[nrecs++];
    copy_name(r->case_name, sizeof(r->case_name), case_name);
    copy_name(r->tr, sizeof(r->tr), tr);
    r->size = size;
    copy_name(r->layout, sizeof(r->layout), layout);
    copy_name(r->metric, sizeof(r->metric), metric);
    r->value = value;
    copy_name(r->unit, sizeof(r->unit), unit);
    r->rep = rep;
}

int res_get(const char *case_name, const char *tr, size_t size, const char *layout,
            const char *metric, double *v, int nrep)
{
    int found = 0;
    for (int i = 0; i < nrep; i++)
        v[i] = NAN;
    for (size_t i = 0; i < nrecs; i++) {
        const struct res_record *r = &recs[i];
        if (r->rep < 0 || r->rep >= nrep || r->size != size || strcmp(r->case_name, case_name) ||
            strcmp(r->tr, tr) || strcmp(r->layout, layout) || strcmp(r->metric, metric))
            continue;
        if (isnan(v[r->rep]))
            found++;
        v[r->rep] = r->value;
    }
    return found;
}

void res_depth(const char *case_name, const char *tr, size_t size, unsigned long requested,
               long effective, const char *how)
{
    struct res_depth_rec *d = NULL; /* a later measurement replaces an earlier one */
    for (size_t i = 0; i < ndepths; i++)
        if (!strcmp(depths[i].case_name, case_name) && !strcmp(depths[i].tr, tr) &&
            depths[i].size == size)
            d = &depths[i];
    if (!d) {
        depths = grow(depths, &capdepths, ndepths + 1, sizeof(*depths));
        d = &depths[ndepths++];
    }
    copy_name(d->case_name, sizeof(d->case_name), case_name);
    copy_name(d->tr, sizeof(d->tr), tr);
    d->size = size;
    d->requested = requested;
    d->effective = effective;
    copy_name(d->how, sizeof(d->how), how);
}

__attribute__((format(printf, 5, 0))) static void
add_line(char ***list, size_t *n, size_t *cap, const char *prefix, const char *fmt, va_list ap)
{
    char line[1024];
    vsnprintf(line, sizeof(line), fmt, ap);
    for (size_t i = 0; i < *n; i++)
        if (!strcmp((*list)[i], line))
            return;
    *list = grow(*list, cap, *n + 1, sizeof(**list));
    (*list)[(*n)++] = strdup(line);
    fprintf(stderr, "pbx_bench: %s%s\n", prefix, line);
}

void res_note(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    add_line(&notes, &nnotes, &capnotes, "note: ", fmt, ap);
    va_end(ap);
}

void res_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    add_line(&errors, &nerrors, &caperrors, "ERROR: ", fmt, ap);
    va_end(ap);
}

int res_error_count(void)
{
    return (int) nerrors;
}

void res_dist(const char *case_name, const char *tr, const char *layout, const double *sorted,
              size_t n)
{
    if (n == 0)
        return;
    struct res_dist_rec *d = NULL;
    for (size_t i = 0; i < ndists; i++)
        if (!strcmp(dists[i].case_name, case_name) && !strcmp(dists[i].tr, tr) &&
            !strcmp(dists[i].layout, layout))
            d = &dists[i];
    if (!d) {
        dists = grow(dists, &capdists, ndists + 1, sizeof(*dists));
        d = &dists[ndists++];
        copy_name(d->case_name, sizeof(d->case_name), case_name);
        copy_name(d->tr, sizeof(d->tr), tr);
        copy_name(d->layout, sizeof(d->layout), layout);
    }
    for (int i = 0; i < RES_DIST_POINTS; i++) {
        d->p[i] = 1.0 - pow(10.0, -4.0 * i / (RES_DIST_POINTS - 1));
        d->q[i] = bench_quantile_sorted(sorted, n, d->p[i]);
    }
}

const struct res_record *res_records(size_t *n)
{
    *n = nrecs;
    return recs;
}

const struct res_depth_rec *res_depths(size_t *n)
{
    *n = ndepths;
    return depths;
}

const struct res_dist_rec *res_dists(size_t *n)
{
    *n = ndists;
    return dists;
}

const char *const *res_notes(size_t *n)
{
    *n = nnotes;
    return (const char *const *) notes;
}

const char *const *res_errors(size_t *n)
{
    *n = nerrors;
    return (const char *const *) errors;
}
