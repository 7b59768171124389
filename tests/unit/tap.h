/* tap.h -- the harness of the C unit tests: TAP output and guard pages.
 *
 * Include after defining AREA_BYTES (the largest input).  Every input is
 * copied by guarded() so that it ends right before a PROT_NONE page: code
 * that reads one byte too far crashes instead of passing by luck.  Results
 * are buffered so that the plan ("1..N") can come first.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static unsigned char *area;         /* AREA_BYTES writable, then the guard page */
static size_t area_size;
static FILE *out;
static char *out_buf;
static size_t out_len;
static int ntests, nfailed;

static void ok(int cond, const char *fmt, ...)
{
    va_list ap;

    ntests++;
    if (!cond)
        nfailed++;
    fprintf(out, "%sok %d - ", cond ? "" : "not ", ntests);
    va_start(ap, fmt);
    vfprintf(out, fmt, ap);
    va_end(ap);
    fputc('\n', out);
}

/* Copy s[0..n) so that it ends right before the guard page. */
__attribute__((unused)) static void *guarded(const void *s, size_t n)
{
    if (n > area_size) {
        fprintf(stderr, "input too large\n");
        exit(2);
    }
    return memmove(area + area_size - n, s, n);
}

static void tap_begin(void)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);

    if (!(out = open_memstream(&out_buf, &out_len)))
        exit(2);
    area_size = (AREA_BYTES + page - 1) / page * page;
    area = mmap(NULL, area_size + page, PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (area == MAP_FAILED || mprotect(area + area_size, page, PROT_NONE)) {
        perror("mmap");
        exit(2);
    }
}

/* Print the plan and the results; the exit status of the program. */
static int tap_end(void)
{
    fclose(out);
    printf("1..%d\n%s", ntests, out_buf);
    free(out_buf);
    return nfailed != 0;
}
