/* spirv_reflect.c: see spirv_reflect.h. */
#include "spirv_reflect.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_IDS_CAP (1u << 22)

enum { T_NONE, T_INT, T_FLOAT, T_BOOL, T_VEC, T_STRUCT, T_ARRAY, T_RTARRAY, T_PTR, T_MAT };

typedef struct {
    uint8_t kind;
    uint32_t width;        /* int/float bits */
    uint32_t elem, count;  /* vector/array/matrix: element type id, count (array: length constant id) */
    uint32_t storage;      /* pointer: storage class */
    uint32_t *members;     /* struct member type ids */
    uint32_t nmembers;
    int32_t set, binding, spec_id;
    uint8_t block, buffer_block;
    uint32_t array_stride;
    uint32_t *offsets;     /* struct member offsets (Offset decorations) */
    uint64_t const_value;  /* OpConstant low words */
    uint8_t is_var;        /* OpVariable: type in elem (pointer type), storage in storage */
} Id;

static uint32_t type_size(Id *ids, uint32_t bound, uint32_t t, int depth) {
    if (t >= bound || depth > 16) return 0;
    Id *x = &ids[t];
    switch (x->kind) {
    case T_INT: case T_FLOAT: return x->width / 8;
    case T_BOOL: return 4;
    case T_VEC: case T_MAT: return x->count * type_size(ids, bound, x->elem, depth + 1);
    case T_ARRAY: {
        uint32_t n = x->count < bound ? (uint32_t)ids[x->count].const_value : 0;
        uint32_t st = x->array_stride ? x->array_stride : type_size(ids, bound, x->elem, depth + 1);
        return n * st;
    }
    case T_STRUCT: {
        uint32_t end = 0;
        for (uint32_t m = 0; m < x->nmembers; ++m) {
            uint32_t off = x->offsets ? x->offsets[m] : 0;
            uint32_t e = off + type_size(ids, bound, x->members[m], depth + 1);
            if (e > end) end = e;
        }
        return end;
    }
    default: return 0;
    }
}

int reflect(const uint32_t *w, size_t nw, Reflection *r) {
    memset(r, 0, sizeof *r);
    if (nw < 5 || w[0] != 0x07230203u) { snprintf(r->err, sizeof r->err, "not SPIR-V (bad magic)"); return -1; }
    uint32_t bound = w[3];
    if (bound == 0 || bound > MAX_IDS_CAP) { snprintf(r->err, sizeof r->err, "bad id bound %u", bound); return -1; }
    Id *ids = calloc(bound, sizeof(Id));
    if (!ids) { snprintf(r->err, sizeof r->err, "out of memory"); return -1; }
    for (uint32_t i = 0; i < bound; ++i) { ids[i].set = -1; ids[i].binding = -1; ids[i].spec_id = -1; }
    /* two passes: declarations (types, variables, constants), then decorations that need the struct
     * member count (OpMemberDecorate precedes OpTypeStruct in a module's layout) */
    for (int pass = 0; pass < 2; ++pass) {
        size_t i = 5;
        while (i < nw) {
            uint32_t op = w[i] & 0xffff, n = w[i] >> 16;
            if (n == 0 || i + n > nw) { snprintf(r->err, sizeof r->err, "truncated instruction at word %zu", i); free(ids); return -1; }
            const uint32_t *a = w + i + 1;
#define ID_OK(v) ((v) < bound)
            if (pass == 0) {
                switch (op) {
                case 20: if (ID_OK(a[0])) ids[a[0]].kind = T_BOOL; break;                             /* OpTypeBool */
                case 21: if (ID_OK(a[0])) { ids[a[0]].kind = T_INT; ids[a[0]].width = a[1]; } break;   /* OpTypeInt */
                case 22: if (ID_OK(a[0])) { ids[a[0]].kind = T_FLOAT; ids[a[0]].width = a[1]; } break; /* OpTypeFloat */
                case 23: case 24:                                                                      /* OpTypeVector/Matrix */
                    if (ID_OK(a[0])) { ids[a[0]].kind = op == 23 ? T_VEC : T_MAT; ids[a[0]].elem = a[1]; ids[a[0]].count = a[2]; }
                    break;
                case 28: if (ID_OK(a[0])) { ids[a[0]].kind = T_ARRAY; ids[a[0]].elem = a[1]; ids[a[0]].count = a[2]; } break;
                case 29: if (ID_OK(a[0])) { ids[a[0]].kind = T_RTARRAY; ids[a[0]].elem = a[1]; } break;
                case 30:                                                                               /* OpTypeStruct */
                    if (ID_OK(a[0])) {
                        Id *s = &ids[a[0]];
                        s->kind = T_STRUCT;
                        s->nmembers = n - 2;
                        s->members = calloc(s->nmembers + 1, sizeof(uint32_t));
                        s->offsets = calloc(s->nmembers + 1, sizeof(uint32_t));
                        for (uint32_t m = 0; m < s->nmembers; ++m) s->members[m] = a[1 + m];
                    }
                    break;
                case 32: if (ID_OK(a[0])) { ids[a[0]].kind = T_PTR; ids[a[0]].storage = a[1]; ids[a[0]].elem = a[2]; } break;
                case 43: if (ID_OK(a[1])) ids[a[1]].const_value = a[2]; break;                         /* OpConstant */
                case 59: if (ID_OK(a[1])) { ids[a[1]].is_var = 1; ids[a[1]].elem = a[0]; ids[a[1]].storage = a[2]; } break;
                case 48: case 49: case 50:                                                             /* OpSpecConstant* */
                    if (ID_OK(a[1])) ids[a[1]].elem = a[0];
                    break;
                }
            } else {
                if (op == 71 && n >= 3 && ID_OK(a[0])) {                                               /* OpDecorate */
                    Id *x = &ids[a[0]];
                    switch (a[1]) {
                    case 1: if (n >= 4) x->spec_id = (int32_t)a[2]; break;
                    case 2: x->block = 1; break;
                    case 3: x->buffer_block = 1; break;
                    case 6: if (n >= 4) x->array_stride = a[2]; break;
                    case 33: if (n >= 4) x->binding = (int32_t)a[2]; break;
                    case 34: if (n >= 4) x->set = (int32_t)a[2]; break;
                    }
                } else if (op == 72 && n >= 5 && ID_OK(a[0]) && a[2] == 35) {                          /* OpMemberDecorate Offset */
                    Id *s = &ids[a[0]];
                    if (s->offsets && a[1] < s->nmembers) s->offsets[a[1]] = a[3];
                }
            }
            i += n;
        }
    }
    int rc = 0;
    for (uint32_t v = 0; v < bound && rc == 0; ++v) {
        Id *x = &ids[v];
        if (x->spec_id >= 0) {
            if (x->spec_id >= MAX_SPEC) { snprintf(r->err, sizeof r->err, "SpecId %d too large", x->spec_id); rc = -1; break; }
            uint32_t sz = x->elem < bound ? type_size(ids, bound, x->elem, 0) : 4;
            r->spec_size[x->spec_id] = sz ? sz : 4;
            if ((uint32_t)x->spec_id + 1 > r->nspec) r->nspec = (uint32_t)x->spec_id + 1;
        }
        if (!x->is_var || x->elem >= bound) continue;
        Id *ptr = &ids[x->elem];
        uint32_t pointee = ptr->elem < bound ? ptr->elem : 0;
        uint32_t sc = x->storage;
        if (sc == 9) {                                                                                 /* PushConstant */
            uint32_t sz = type_size(ids, bound, pointee, 0);
            if (sz > r->push_size) r->push_size = sz;
            continue;
        }
        VkDescriptorType dt;
        uint32_t inner = pointee;
        while (inner < bound && (ids[inner].kind == T_ARRAY || ids[inner].kind == T_RTARRAY)) inner = ids[inner].elem;
        if (sc == 12) dt = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;                                          /* StorageBuffer */
        else if (sc == 2) dt = (inner < bound && ids[inner].buffer_block) ? VK_DESCRIPTOR_TYPE_STORAGE_BUFFER
                                                                        : VK_DESCRIPTOR_TYPE_UNIFORM_BUFFER;
        else if (sc == 0) {                                                                            /* UniformConstant */
            if (x->binding < 0) continue;
            snprintf(r->err, sizeof r->err, "binding %d: images/samplers are not supported", x->binding);
            rc = -1;
            break;
        } else continue;
        if (x->binding < 0) continue;
        uint32_t set = x->set < 0 ? 0 : (uint32_t)x->set;
        int dup = 0;
        for (int k = 0; k < r->nb; ++k) {
            if (r->b[k].set == set && r->b[k].binding == (uint32_t)x->binding) {
                dup = 1;   /* aliased declarations of one binding (vec4 and scalar views) */
                if (r->b[k].type != dt) { snprintf(r->err, sizeof r->err, "binding %u.%d declared with two types", set, x->binding); rc = -1; }
            }
        }
        if (dup) continue;
        if (r->nb >= MAX_BINDINGS || set >= MAX_SETS) { snprintf(r->err, sizeof r->err, "too many bindings/sets"); rc = -1; break; }
        r->b[r->nb].set = set;
        r->b[r->nb].binding = (uint32_t)x->binding;
        r->b[r->nb].type = dt;
        r->nb++;
    }
    for (uint32_t v = 0; v < bound; ++v) { free(ids[v].members); free(ids[v].offsets); }
    free(ids);
    return rc;
}

