/*
 * output.c — reports and how they are shown: text tables, JSON, CSV,
 * gnuplot SVG plots and Markdown.
 *
 * Owns: the report model (tables, figures, histograms, notes) and every
 * byte parbench prints on stdout for a report. Subcommands only fill
 * reports; they never print results themselves.
 *
 * JSON shape (one object per run):
 *   {"parbench": VERSION, "command": C, "cmdline": "...",
 *    "machine": {"host","cpu","cpus","kernel"},
 *    "tables": [{"key","title","note","columns":[{"key","head","unit"}],
 *                "rows":[{col: value, ...}]}],
 *    "figures": {key: {"value","unit","what","target","cmp","met"}},
 *    "histograms": [{"name","count","min","max","mean","p50","p99",
 *                    "buckets":[[lo_ns, hi_ns, count], ...]}],
 *    "notes": ["..."]}
 * and `all` wraps several: {"parbench", "command":"all", "machine",
 * "reports": [ ... ]}. Numbers that are not finite are written as null.
 *
 * Must not: measure anything.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

/* ======================================================================
 * The model
 * ====================================================================== */

void pb_report_init(struct pb_report *r, const char *command, const struct pb_opts *o)
{
    memset(r, 0, sizeof(*r));
    snprintf(r->command, sizeof(r->command), "%s", command);
    snprintf(r->cmdline, sizeof(r->cmdline), "parbench %.15s%.480s", command, o ? o->cmdline : "");
    r->hists = calloc(PB_MAX_HISTS, sizeof(*r->hists));
}

void pb_report_free(struct pb_report *r)
{
    for (int i = 0; i < r->ntables; i++)
        free(r->tables[i].cells);
    free(r->hists);
    r->hists = NULL;
    r->ntables = 0;
}

struct pb_table *pb_table_new(struct pb_report *r, const char *key, const char *title,
                              const struct pb_col *cols, int ncols)
{
    if (r->ntables >= PB_MAX_TABLES || ncols > PB_MAX_COLS)
        abort(); /* a programming error, caught by the tests */
    struct pb_table *t = &r->tables[r->ntables++];
    memset(t, 0, sizeof(*t));
    snprintf(t->key, sizeof(t->key), "%s", key);
    snprintf(t->title, sizeof(t->title), "%s", title);
    t->ncols = ncols;
    memcpy(t->cols, cols, (size_t)ncols * sizeof(*cols));
    t->plot.x = -1;
    t->plot.series = -1;
    t->plot.series2 = -1;
    t->plot.exclude_col = -1;
    return t;
}

int pb_row(struct pb_table *t)
{
    if (t->nrows == t->cap) {
        int cap = t->cap ? 2 * t->cap : 16;
        struct pb_cell *c = realloc(t->cells, (size_t)cap * (size_t)t->ncols * sizeof(*c));
        if (!c)
            abort();
        t->cells = c;
        t->cap = cap;
    }
    struct pb_cell *row = &t->cells[(size_t)t->nrows * (size_t)t->ncols];
    for (int i = 0; i < t->ncols; i++) {
        row[i].is_num = t->cols[i].prec >= 0;
        row[i].num = NAN;
        row[i].str[0] = '\0';
    }
    return t->nrows++;
}

static struct pb_cell *cell(const struct pb_table *t, int row, int col)
{
    return &t->cells[(size_t)row * (size_t)t->ncols + (size_t)col];
}

void pb_set_num(struct pb_table *t, int row, int col, double v)
{
    struct pb_cell *c = cell(t, row, col);
    c->is_num = true;
    c->num = v;
}

void pb_set_str(struct pb_table *t, int row, int col, const char *s)
{
    struct pb_cell *c = cell(t, row, col);
    c->is_num = false;
    snprintf(c->str, sizeof(c->str), "%s", s);
}

double pb_get_num(const struct pb_table *t, int row, int col)
{
    return cell(t, row, col)->num;
}

const char *pb_get_str(const struct pb_table *t, int row, int col)
{
    return cell(t, row, col)->str;
}

void pb_table_note(struct pb_table *t, const char *fmt, ...)
{
    size_t used = strlen(t->note);
    if (used && used + 2 < sizeof(t->note))
        t->note[used++] = ' ', t->note[used] = '\0';
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->note + used, sizeof(t->note) - used, fmt, ap);
    va_end(ap);
}

void pb_figure(struct pb_report *r, const char *key, double value, const char *unit,
               enum pb_cmp cmp, double target, const char *fmt, ...)
{
    if (r->nfigs >= PB_MAX_FIGS)
        abort();
    struct pb_figure *f = &r->figs[r->nfigs++];
    memset(f, 0, sizeof(*f));
    snprintf(f->key, sizeof(f->key), "%s", key);
    snprintf(f->unit, sizeof(f->unit), "%s", unit);
    f->value = value;
    f->cmp = cmp;
    f->target = target;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->what, sizeof(f->what), fmt, ap);
    va_end(ap);
}

void pb_hist_add(struct pb_report *r, const char *name, const struct pard_hist *h)
{
    if (!r->hists || r->nhists >= PB_MAX_HISTS)
        return;
    struct pb_histo *x = &r->hists[r->nhists++];
    snprintf(x->name, sizeof(x->name), "%s", name);
    x->h = *h;
}

void pb_note(struct pb_report *r, const char *fmt, ...)
{
    if (r->nnotes >= PB_MAX_NOTES)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->notes[r->nnotes++], sizeof(r->notes[0]), fmt, ap);
    va_end(ap);
}

bool pb_figure_met(const struct pb_figure *f)
{
    if (f->cmp == PB_AT_MOST)
        return isfinite(f->value) && f->value <= f->target;
    if (f->cmp == PB_AT_LEAST)
        return isfinite(f->value) && f->value >= f->target;
    return true;
}

/* ======================================================================
 * Text
 * ====================================================================== */

static void fmt_cell(const struct pb_table *t, int row, int col, char *buf, size_t len)
{
    const struct pb_cell *c = cell(t, row, col);
    if (!c->is_num) {
        snprintf(buf, len, "%s", c->str);
        return;
    }
    if (!isfinite(c->num)) {
        snprintf(buf, len, "-");
        return;
    }
    int prec = t->cols[col].prec < 0 ? 2 : t->cols[col].prec;
    snprintf(buf, len, "%.*f", prec, c->num);
}

static void fmt_value(double v, char *buf, size_t len)
{
    if (!isfinite(v))
        snprintf(buf, len, "-");
    else if (fabs(v) >= 1e6 || (fabs(v) < 0.01 && v != 0))
        snprintf(buf, len, "%.3g", v);
    else if (fabs(v) >= 100)
        snprintf(buf, len, "%.0f", v);
    else
        snprintf(buf, len, "%.3g", v);
}

static const char *cmp_str(enum pb_cmp c)
{
    return c == PB_AT_MOST ? "<=" : c == PB_AT_LEAST ? ">=" : "";
}

static void text_table(FILE *f, const struct pb_table *t)
{
    int w[PB_MAX_COLS];
    char buf[64];
    for (int c = 0; c < t->ncols; c++) {
        w[c] = (int)strlen(t->cols[c].head);
        for (int r = 0; r < t->nrows; r++) {
            fmt_cell(t, r, c, buf, sizeof(buf));
            if ((int)strlen(buf) > w[c])
                w[c] = (int)strlen(buf);
        }
    }
    fprintf(f, "\n%s\n", t->title);
    for (int c = 0; c < t->ncols; c++)
        fprintf(f, c == 0 ? "  %-*s" : "  %*s", w[c], t->cols[c].head);
    fputc('\n', f);
    for (int r = 0; r < t->nrows; r++) {
        for (int c = 0; c < t->ncols; c++) {
            fmt_cell(t, r, c, buf, sizeof(buf));
            bool left = c == 0 || !cell(t, r, c)->is_num;
            fprintf(f, left ? "  %-*s" : "  %*s", w[c], buf);
        }
        fputc('\n', f);
    }
    if (t->note[0]) {
        /* Wrap the note at about 96 columns. */
        const char *p = t->note;
        while (*p) {
            int n = (int)strlen(p);
            if (n > 94) {
                n = 94;
                while (n > 40 && p[n] != ' ')
                    n--;
            }
            fprintf(f, "  %.*s\n", n, p);
            p += n;
            while (*p == ' ')
                p++;
        }
    }
}

static void text_hist(FILE *f, const struct pb_histo *x)
{
    const struct pard_hist *h = &x->h;
    if (h->count == 0)
        return;
    /* Merge buckets into at most 24 display rows between p0.1 and max. */
    uint64_t lo = pard_hist_percentile(h, 0.1), hi = h->max;
    fprintf(f, "\n  histogram: %s (%llu round trips, ns)\n", x->name, (unsigned long long)h->count);
    uint64_t peak = 0;
    for (unsigned i = 0; i < PARD_HIST_BUCKETS; i++)
        if (h->buckets[i] > peak)
            peak = h->buckets[i];
    int shown = 0;
    uint64_t below = 0;
    for (unsigned i = 0; i < PARD_HIST_BUCKETS && shown < 40; i++) {
        uint64_t blo, bhi;
        pard_hist_bucket_bounds(i, &blo, &bhi);
        if (bhi < lo) {
            below += h->buckets[i];
            continue;
        }
        if (blo > hi)
            break;
        if (h->buckets[i] == 0)
            continue;
        int bar = (int)(50.0 * (double)h->buckets[i] / (double)peak + 0.5);
        fprintf(f, "  %10llu - %-10llu %9llu |%.*s\n", (unsigned long long)blo,
                (unsigned long long)bhi, (unsigned long long)h->buckets[i], bar,
                "##################################################");
        shown++;
    }
    (void)below;
}

static void text_report(FILE *f, const struct pb_report *r, const struct pb_opts *o)
{
    fprintf(f, "parbench %s\n", r->command);
    for (int i = 0; i < r->ntables; i++)
        text_table(f, &r->tables[i]);
    if (o->hist)
        for (int i = 0; i < r->nhists; i++)
            text_hist(f, &r->hists[i]);
    if (r->nfigs) {
        fprintf(f, "\nHeadline figures\n");
        int w = 0;
        for (int i = 0; i < r->nfigs; i++)
            if ((int)strlen(r->figs[i].what) > w)
                w = (int)strlen(r->figs[i].what);
        for (int i = 0; i < r->nfigs; i++) {
            const struct pb_figure *g = &r->figs[i];
            char v[32], t[32];
            fmt_value(g->value, v, sizeof(v));
            fprintf(f, "  %-*s  %10s %-8s", w, g->what, v, g->unit);
            if (g->cmp != PB_NONE) {
                fmt_value(g->target, t, sizeof(t));
                fprintf(f, "  target %s %s: %s", cmp_str(g->cmp), t,
                        pb_figure_met(g) ? "met" : "MISSED");
            }
            fputc('\n', f);
        }
    }
    for (int i = 0; i < r->nnotes; i++)
        fprintf(f, "%s%s\n", i == 0 ? "\n" : "", r->notes[i]);
}

/* ======================================================================
 * JSON
 * ====================================================================== */

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c == '\n')
            fputs("\\n", f);
        else if (c == '\t')
            fputs("\\t", f);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static void json_num(FILE *f, double v)
{
    if (!isfinite(v))
        fputs("null", f);
    else if (v == floor(v) && fabs(v) < 1e15)
        fprintf(f, "%.0f", v);
    else
        fprintf(f, "%.6g", v);
}

static void json_machine(FILE *f)
{
    struct pb_machine m;
    pb_machine_get(&m);
    fputs("\"machine\":{\"host\":", f);
    json_str(f, m.host);
    fputs(",\"cpu\":", f);
    json_str(f, m.cpu);
    fprintf(f, ",\"cpus\":%d,\"kernel\":", m.cpus);
    json_str(f, m.kernel);
    fputc('}', f);
}

static void json_table(FILE *f, const struct pb_table *t)
{
    fputs("{\"key\":", f);
    json_str(f, t->key);
    fputs(",\"title\":", f);
    json_str(f, t->title);
    fputs(",\"note\":", f);
    json_str(f, t->note);
    fputs(",\"columns\":[", f);
    for (int c = 0; c < t->ncols; c++) {
        fputs(c ? ",{\"key\":" : "{\"key\":", f);
        json_str(f, t->cols[c].key);
        fputs(",\"head\":", f);
        json_str(f, t->cols[c].head);
        fputc('}', f);
    }
    fputs("],\"rows\":[", f);
    for (int r = 0; r < t->nrows; r++) {
        fputs(r ? ",\n{" : "\n{", f);
        for (int c = 0; c < t->ncols; c++) {
            if (c)
                fputc(',', f);
            json_str(f, t->cols[c].key);
            fputc(':', f);
            const struct pb_cell *x = cell(t, r, c);
            if (x->is_num)
                json_num(f, x->num);
            else
                json_str(f, x->str);
        }
        fputc('}', f);
    }
    fputs("]}", f);
}

static void json_report_body(FILE *f, const struct pb_report *r)
{
    fputs("\"command\":", f);
    json_str(f, r->command);
    fputs(",\"cmdline\":", f);
    json_str(f, r->cmdline);
    fputs(",\"tables\":[", f);
    for (int i = 0; i < r->ntables; i++) {
        if (i)
            fputs(",\n", f);
        json_table(f, &r->tables[i]);
    }
    fputs("],\n\"figures\":{", f);
    for (int i = 0; i < r->nfigs; i++) {
        const struct pb_figure *g = &r->figs[i];
        if (i)
            fputs(",\n", f);
        json_str(f, g->key);
        fputs(":{\"value\":", f);
        json_num(f, g->value);
        fputs(",\"unit\":", f);
        json_str(f, g->unit);
        fputs(",\"what\":", f);
        json_str(f, g->what);
        if (g->cmp != PB_NONE) {
            fputs(",\"target\":", f);
            json_num(f, g->target);
            fputs(",\"cmp\":", f);
            json_str(f, cmp_str(g->cmp));
            fprintf(f, ",\"met\":%s", pb_figure_met(g) ? "true" : "false");
        }
        fputc('}', f);
    }
    fputs("},\n\"histograms\":[", f);
    for (int i = 0; i < r->nhists; i++) {
        const struct pard_hist *h = &r->hists[i].h;
        if (i)
            fputs(",\n", f);
        fputs("{\"name\":", f);
        json_str(f, r->hists[i].name);
        fprintf(f,
                ",\"count\":%llu,\"min\":%llu,\"max\":%llu,\"mean\":", (unsigned long long)h->count,
                (unsigned long long)(h->count ? h->min : 0), (unsigned long long)h->max);
        json_num(f, pard_hist_mean(h));
        fprintf(f, ",\"p50\":%llu,\"p99\":%llu,\"buckets\":[",
                (unsigned long long)pard_hist_percentile(h, 50),
                (unsigned long long)pard_hist_percentile(h, 99));
        bool first = true;
        for (unsigned b = 0; b < PARD_HIST_BUCKETS; b++) {
            if (!h->buckets[b])
                continue;
            uint64_t lo, hi;
            pard_hist_bucket_bounds(b, &lo, &hi);
            fprintf(f, "%s[%llu,%llu,%llu]", first ? "" : ",", (unsigned long long)lo,
                    (unsigned long long)hi, (unsigned long long)h->buckets[b]);
            first = false;
        }
        fputs("]}", f);
    }
    fputs("],\n\"notes\":[", f);
    for (int i = 0; i < r->nnotes; i++) {
        if (i)
            fputc(',', f);
        json_str(f, r->notes[i]);
    }
    fputc(']', f);
}

static void json_out(FILE *f, struct pb_report *const *reps, int n)
{
    fputs("{\"parbench\":\"" PB_VERSION "\",", f);
    json_machine(f);
    fputs(",\n", f);
    if (n == 1) {
        json_report_body(f, reps[0]);
    } else {
        fputs("\"command\":\"all\",\"reports\":[\n", f);
        for (int i = 0; i < n; i++) {
            fputs(i ? ",\n{" : "{", f);
            json_report_body(f, reps[i]);
            fputc('}', f);
        }
        fputc(']', f);
    }
    fputs("}\n", f);
}

/* ======================================================================
 * CSV
 * ====================================================================== */

static void csv_field(FILE *f, const char *s)
{
    if (strpbrk(s, ",\"\n")) {
        fputc('"', f);
        for (; *s; s++) {
            if (*s == '"')
                fputc('"', f);
            fputc(*s, f);
        }
        fputc('"', f);
    } else {
        fputs(s, f);
    }
}

static void csv_report(FILE *f, const struct pb_report *r, bool *first_block)
{
    char buf[64];
    for (int i = 0; i < r->ntables; i++) {
        const struct pb_table *t = &r->tables[i];
        if (!*first_block)
            fputc('\n', f);
        *first_block = false;
        fputs("command,table", f);
        for (int c = 0; c < t->ncols; c++)
            fprintf(f, ",%s", t->cols[c].key);
        fputc('\n', f);
        for (int row = 0; row < t->nrows; row++) {
            fprintf(f, "%s,%s", r->command, t->key);
            for (int c = 0; c < t->ncols; c++) {
                fputc(',', f);
                const struct pb_cell *x = cell(t, row, c);
                if (x->is_num) {
                    if (isfinite(x->num))
                        fprintf(f, "%.6g", x->num);
                } else {
                    csv_field(f, x->str);
                }
            }
            fputc('\n', f);
        }
    }
    if (r->nfigs) {
        if (!*first_block)
            fputc('\n', f);
        *first_block = false;
        fputs("command,figure,value,unit,cmp,target,met,what\n", f);
        for (int i = 0; i < r->nfigs; i++) {
            const struct pb_figure *g = &r->figs[i];
            snprintf(buf, sizeof(buf), "%.6g", g->value);
            fprintf(f, "%s,%s,%s,%s,%s,", r->command, g->key, isfinite(g->value) ? buf : "",
                    g->unit, cmp_str(g->cmp));
            if (g->cmp != PB_NONE)
                fprintf(f, "%.6g,%s", g->target, pb_figure_met(g) ? "yes" : "no");
            else
                fputc(',', f);
            fputc(',', f);
            csv_field(f, g->what);
            fputc('\n', f);
        }
    }
}

/* ======================================================================
 * Plots (gnuplot)
 * ====================================================================== */

static bool find_in_path(const char *prog)
{
    const char *path = getenv("PATH");
    if (!path)
        path = "/usr/bin:/bin";
    char buf[1024];
    while (*path) {
        size_t n = strcspn(path, ":");
        if (n > 0 && n < 900) {
            snprintf(buf, sizeof(buf), "%.*s/%s", (int)n, path, prog);
            if (access(buf, X_OK) == 0)
                return true;
        }
        path += n;
        if (*path == ':')
            path++;
    }
    return false;
}

static void gp_quote(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fputc('\\', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static void gp_cell(FILE *f, const struct pb_table *t, int row, int col)
{
    const struct pb_cell *x = cell(t, row, col);
    if (x->is_num) {
        if (isfinite(x->num))
            fprintf(f, "%.9g", x->num);
        else
            fputs("NaN", f);
    } else {
        gp_quote(f, x->str);
    }
}

/* Whether row r is plotted (not excluded). */
static bool plotted(const struct pb_table *t, int r)
{
    const struct pb_plot *p = &t->plot;
    return p->exclude_col < 0 || !p->exclude_val ||
           strcmp(pb_get_str(t, r, p->exclude_col), p->exclude_val) != 0;
}

/* The series a row belongs to: "A" or "A, B". */
static void series_key(const struct pb_table *t, int r, char *buf, size_t len)
{
    const struct pb_plot *p = &t->plot;
    if (p->series2 >= 0)
        snprintf(buf, len, "%.48s, %.48s", pb_get_str(t, r, p->series),
                 pb_get_str(t, r, p->series2));
    else
        snprintf(buf, len, "%.98s", pb_get_str(t, r, p->series));
}

/* Write one table's plot to `file` through gnuplot. Returns 0 or -1. */
static int plot_table(const struct pb_table *t, const char *file)
{
    const struct pb_plot *p = &t->plot;
    FILE *g = popen("gnuplot", "w");
    if (!g)
        return -1;
    size_t fl = strlen(file);
    if (fl > 4 && strcmp(file + fl - 4, ".png") == 0)
        fputs("set terminal pngcairo size 960,560 enhanced font 'sans,10' background rgb "
              "'white'\n",
              g);
    else
        fputs("set terminal svg size 960,560 dynamic enhanced font 'sans,12' background rgb "
              "'white'\n",
              g);
    fputs("set output ", g);
    gp_quote(g, file);
    fputs("\nset title ", g);
    gp_quote(g, t->title);
    fputs(" noenhanced\nset grid\nset key outside right top noenhanced\n", g);
    if (p->xlabel) {
        fputs("set xlabel ", g);
        gp_quote(g, p->xlabel);
        fputs(" noenhanced\n", g);
    }
    if (p->ylabel) {
        fputs("set ylabel ", g);
        gp_quote(g, p->ylabel);
        fputs(" noenhanced\n", g);
    }
    if (p->logy)
        fputs("set logscale y\n", g);
    bool xstr = t->cols[p->x].prec < 0;
    if (xstr) {
        /* Labels on x: clustered bars. */
        fputs("set style data histograms\nset style histogram clustered gap 1\n"
              "set style fill solid 0.85 border -1\nset boxwidth 0.9\n"
              "set xtics rotate by -35 noenhanced\n",
              g);
    } else if (p->logx) {
        fputs("set logscale x\n", g);
    }
    /* Series: distinct values of the series column(s), in order of appearance. */
    char(*series)[100] = calloc(64, sizeof(*series));
    int nseries = 0;
    if (!series) {
        pclose(g);
        return -1;
    }
    char key[100];
    if (p->series >= 0 && !xstr) {
        for (int r = 0; r < t->nrows && nseries < 64; r++) {
            if (!plotted(t, r))
                continue;
            series_key(t, r, key, sizeof(key));
            bool seen = false;
            for (int k = 0; k < nseries; k++)
                seen |= strcmp(series[k], key) == 0;
            if (!seen)
                snprintf(series[nseries++], sizeof(series[0]), "%s", key);
        }
    }
    int nblocks = nseries ? nseries : 1;
    fputs("$data << EOD\n", g);
    for (int b = 0; b < nblocks; b++) {
        if (b)
            fputs("\n\n", g);
        for (int r = 0; r < t->nrows; r++) {
            if (!plotted(t, r))
                continue;
            if (nseries) {
                series_key(t, r, key, sizeof(key));
                if (strcmp(key, series[b]) != 0)
                    continue;
            }
            gp_cell(g, t, r, p->x);
            for (int k = 0; k < p->ny; k++) {
                fputc(' ', g);
                gp_cell(g, t, r, p->y[k]);
            }
            fputc('\n', g);
        }
    }
    fputs("EOD\nplot ", g);
    bool first = true;
    for (int b = 0; b < nblocks; b++) {
        for (int k = 0; k < p->ny; k++) {
            if (!first)
                fputs(", ", g);
            first = false;
            char title[160];
            if (nseries && p->ny > 1)
                snprintf(title, sizeof(title), "%s, %s", series[b], t->cols[p->y[k]].head);
            else if (nseries)
                snprintf(title, sizeof(title), "%s", series[b]);
            else
                snprintf(title, sizeof(title), "%s", t->cols[p->y[k]].head);
            if (xstr)
                fprintf(g, "$data using %d:xtic(1) title ", k + 2);
            else
                fprintf(g, "$data index %d using 1:%d with linespoints lw 2 pt 7 title ", b, k + 2);
            gp_quote(g, title);
            fputs(" noenhanced", g);
        }
    }
    fputc('\n', g);
    free(series);
    int st = pclose(g);
    return st == 0 ? 0 : -1;
}

static int plot_all(const struct pb_opts *o, struct pb_report *const *reps, int n)
{
    if (!find_in_path("gnuplot")) {
        fprintf(stderr,
                "parbench: --plot needs gnuplot, which is not installed (on Debian: "
                "apt-get install gnuplot-nox, or `make bench-peers`); the results above "
                "are complete, only %s was not written\n",
                o->plot);
        return 1;
    }
    char stem[512];
    snprintf(stem, sizeof(stem), "%s", o->plot);
    size_t sl = strlen(stem);
    const char *ext = ".svg";
    if (sl > 4 && (strcmp(stem + sl - 4, ".svg") == 0 || strcmp(stem + sl - 4, ".png") == 0)) {
        ext = o->plot + sl - 4;
        stem[sl - 4] = '\0';
    }
    bool first = true;
    int rc = 0;
    for (int i = 0; i < n; i++) {
        for (int k = 0; k < reps[i]->ntables; k++) {
            const struct pb_table *t = &reps[i]->tables[k];
            if (t->plot.x < 0 || t->plot.ny == 0 || t->nrows == 0)
                continue;
            char file[700];
            if (first)
                snprintf(file, sizeof(file), "%s", o->plot);
            else
                snprintf(file, sizeof(file), "%s-%s-%s%s", stem, reps[i]->command, t->key, ext);
            first = false;
            if (plot_table(t, file) != 0) {
                fprintf(stderr, "parbench: gnuplot could not write %s\n", file);
                rc = 1;
            } else if (!o->quiet) {
                fprintf(stderr, "parbench: wrote %s\n", file);
            }
        }
    }
    return rc;
}

/* ======================================================================
 * Markdown
 * ====================================================================== */

static void md_table(FILE *f, const struct pb_table *t)
{
    char buf[64];
    fprintf(f, "\n**%s**\n\n|", t->title);
    for (int c = 0; c < t->ncols; c++)
        fprintf(f, " %s |", t->cols[c].head);
    fputs("\n|", f);
    for (int c = 0; c < t->ncols; c++)
        fputs(t->cols[c].prec < 0 ? " --- |" : " ---: |", f);
    fputc('\n', f);
    for (int r = 0; r < t->nrows; r++) {
        fputc('|', f);
        for (int c = 0; c < t->ncols; c++) {
            fmt_cell(t, r, c, buf, sizeof(buf));
            fprintf(f, " %s |", buf);
        }
        fputc('\n', f);
    }
    if (t->note[0])
        fprintf(f, "\n%s\n", t->note);
}

static int markdown_out(const struct pb_opts *o, struct pb_report *const *reps, int n)
{
    FILE *f = fopen(o->markdown, "w");
    if (!f) {
        fprintf(stderr, "parbench: cannot write %s: %s\n", o->markdown, strerror(errno));
        return 1;
    }
    struct pb_machine m;
    pb_machine_get(&m);
    time_t now = time(NULL);
    char date[64];
    strftime(date, sizeof(date), "%Y-%m-%d %H:%M UTC", gmtime(&now));
    fprintf(f, "# parbench report\n\n");
    fprintf(f, "- machine: `%s`, %s, %d CPUs, %s\n", m.host, m.cpu, m.cpus, m.kernel);
    fprintf(f, "- date: %s\n- command: `parbench%s%s`\n", date, n > 1 ? " all" : "",
            n > 1 ? o->cmdline : "");
    if (n == 1)
        fprintf(f, "  (`%s`)\n", reps[0]->cmdline);
    for (int i = 0; i < n; i++) {
        const struct pb_report *r = reps[i];
        fprintf(f, "\n## %s\n\nCommand: `%s`\n", r->command, r->cmdline);
        for (int k = 0; k < r->ntables; k++)
            md_table(f, &r->tables[k]);
        if (r->nfigs) {
            fputs(
                "\n**Headline figures**\n\n| figure | value | target | |\n| --- | ---: | --- | --- "
                "|\n",
                f);
            for (int k = 0; k < r->nfigs; k++) {
                const struct pb_figure *g = &r->figs[k];
                char v[32], t[32];
                fmt_value(g->value, v, sizeof(v));
                fprintf(f, "| %s | %s %s |", g->what, v, g->unit);
                if (g->cmp != PB_NONE) {
                    fmt_value(g->target, t, sizeof(t));
                    fprintf(f, " %s %s | %s |\n", cmp_str(g->cmp), t,
                            pb_figure_met(g) ? "met" : "**missed**");
                } else {
                    fputs(" | |\n", f);
                }
            }
        }
        for (int k = 0; k < r->nnotes; k++)
            fprintf(f, "%s- %s\n", k == 0 ? "\n" : "", r->notes[k]);
    }
    if (fclose(f) != 0) {
        fprintf(stderr, "parbench: cannot write %s: %s\n", o->markdown, strerror(errno));
        return 1;
    }
    if (!o->quiet)
        fprintf(stderr, "parbench: wrote %s\n", o->markdown);
    return 0;
}

/* ======================================================================
 * Entry
 * ====================================================================== */

int pb_emit(const struct pb_opts *o, struct pb_report *const *reps, int n)
{
    FILE *f = stdout;
    if (o->format == PB_JSON) {
        json_out(f, reps, n);
    } else if (o->format == PB_CSV) {
        bool first = true;
        for (int i = 0; i < n; i++)
            csv_report(f, reps[i], &first);
    } else {
        for (int i = 0; i < n; i++) {
            if (i)
                fputs("\n", f);
            text_report(f, reps[i], o);
        }
    }
    fflush(f);
    int rc = 0;
    if (o->plot)
        rc |= plot_all(o, reps, n);
    if (o->markdown)
        rc |= markdown_out(o, reps, n);
    return rc;
}
