/* spirv_reflect: the little SPIR-V reflection isa_stats needs (part of scripts/gpu_compile):
 * descriptor bindings (set, binding, storage or uniform buffer), the push-constant block's size
 * and the byte size of each specialization constant, read from a module's words. */
#ifndef SPIRV_REFLECT_H
#define SPIRV_REFLECT_H
#include <vulkan/vulkan.h>
#include <stddef.h>
#include <stdint.h>

#define MAX_BINDINGS 64
#define MAX_SETS 8
#define MAX_SPEC 64

typedef struct {
    uint32_t set, binding;
    VkDescriptorType type;
} Binding;

typedef struct {
    Binding b[MAX_BINDINGS];
    int nb;
    uint32_t push_size;
    uint32_t spec_size[MAX_SPEC];   /* bytes per constant_id (0: not declared) */
    uint32_t nspec;
    char err[256];
} Reflection;

/* 0 on success; -1 with r->err set */
int reflect(const uint32_t *words, size_t nwords, Reflection *r);
#endif
