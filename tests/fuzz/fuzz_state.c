/* tests/fuzz/fuzz_state.c: the state file loader (kc_state_load) on
 * whatever a disk, a bad editor or another tool leaves: a state must load
 * or be refused with a message naming the file, never crash; a loaded
 * state serialises again (kc_state_to_json), and that serialisation loads
 * back to the same JSON (records, intents, generated values survive a
 * round trip). The input is written to a private temporary folder first
 * (the loader takes a path).
 *
 * Replayed by ctest (fuzz_state: driver.c, corpus/state).
 */
#include <unistd.h>

#include "reconcile/json.h"
#include "reconcile/state.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[64];

static void cleanup(void)
{
    char p[96];

    snprintf(p, sizeof(p), "%s/s.json", dir);
    unlink(p);
    snprintf(p, sizeof(p), "%s/s2.json", dir);
    unlink(p);
    rmdir(dir);
}

static void write_file(const char *path, const void *data, size_t size)
{
    FILE *f = fopen(path, "wb");

    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0)
        KC_BUG("cannot write %s", path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct kc_state *st = NULL, *st2 = NULL;
    struct kc_err err = { 0 };
    char path[96], path2[96];
    struct json_object *j1, *j2;
    char *s1, *s2;

    if (!dir[0]) {
        snprintf(dir, sizeof(dir), "/tmp/kc-fuzz-state.XXXXXX");
        if (!mkdtemp(dir))
            KC_BUG("mkdtemp");
        atexit(cleanup);
    }
    snprintf(path, sizeof(path), "%s/s.json", dir);
    snprintf(path2, sizeof(path2), "%s/s2.json", dir);
    write_file(path, data, size);
    if (kc_state_load(path, &st, &err) < 0) {
        if (st || !strstr(err.msg, "s.json"))
            KC_BUG("refused state: result left or file not named: %s", err.msg);
        return 0;
    }
    for (size_t i = 0; i < kc_state_count(st); i++)
        if (!kc_state_get(st, kc_state_address(st, i)))
            KC_BUG("listed address not found");
    for (size_t i = 0; i < kc_state_intent_count(st); i++)
        if (!kc_state_intent_get(st, kc_state_intent_address(st, i)))
            KC_BUG("listed intent not found");
    /* Round trip: what it would write loads back to the same thing. */
    j1 = kc_state_to_json(st, kc_state_serial(st));
    s1 = kc_json_dump(j1, false);
    write_file(path2, s1, strlen(s1));
    if (kc_state_load(path2, &st2, &err) < 0)
        KC_BUG("own serialisation refused: %s", err.msg);
    j2 = kc_state_to_json(st2, kc_state_serial(st2));
    s2 = kc_json_dump(j2, false);
    if (strcmp(s1, s2) != 0)
        KC_BUG("round trip changed the state:\n%s\n%s", s1, s2);
    free(s1);
    free(s2);
    json_object_put(j1);
    json_object_put(j2);
    kc_state_free(st);
    kc_state_free(st2);
    return 0;
}
