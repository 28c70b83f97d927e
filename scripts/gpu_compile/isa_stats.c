/* isa_stats: compile SPIR-V compute shaders into Vulkan compute pipelines with
 * VK_PIPELINE_CREATE_CAPTURE_STATISTICS_BIT_KHR and print the driver's statistics, one JSON line
 * per job. Part of scripts/gpu_compile (vkconvt): built once into a cache directory by radv.py.
 *
 * Meant for Mesa RADV's null winsys (no GPU needed):
 *   RADV_FORCE_FAMILY=navi31 VK_ICD_FILENAMES=/usr/share/vulkan/icd.d/radeon_icd.json isa_stats < jobs
 * but it works on any device that offers VK_KHR_pipeline_executable_properties.
 *
 * Descriptor set layouts and the push-constant range are read from the SPIR-V itself (OpDecorate
 * DescriptorSet/Binding, the storage class of each variable, the PushConstant block's member
 * offsets), so any compute shader with buffers and 32-bit specialization constants works.
 *
 * Input (stdin), one job per line, tab separated; '#' lines and blank lines are skipped:
 *   label  spv-path  spec  wave
 *     spec: comma-separated 32-bit values for constant_id 0, 1, 2, ... ('-': none, defaults)
 *     wave: 0 (driver's choice), 32 or 64 (VkPipelineShaderStageRequiredSubgroupSizeCreateInfo)
 * Output (stdout), per job:
 *   {"label":..., "wave":..., "ok":true, "ms":..., "executables":[{"name":..., "subgroup":64,
 *    "stats":{"SGPRs":..., ...}}]}   or   {"label":..., "wave":..., "ok":false, "error":"..."}
 * Exit status: 0 when every job compiled, 1 when some failed, 2 on a setup error.
 */
#define _POSIX_C_SOURCE 200809L
#include <vulkan/vulkan.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "spirv_reflect.h"

static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; ++s) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') { fputc('\\', f); fputc(c, f); }
        else if (c == '\n') fputs("\\n", f);
        else if (c == '\t') fputs("\\t", f);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}


/* ------------------------------------------------------------------ Vulkan */
#define CHECK(call, what) do { VkResult r_ = (call); if (r_ != VK_SUCCESS) { \
    fprintf(stderr, "isa_stats: %s failed: VkResult %d\n", what, (int)r_); exit(2); } } while (0)

static VkDevice dev;
static PFN_vkGetPipelineExecutablePropertiesKHR get_exec_props;
static PFN_vkGetPipelineExecutableStatisticsKHR get_exec_stats;
static uint32_t min_sg, max_sg, sg_stages;
static int have_sg_control;

static void *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (n <= 0) { fclose(f); return NULL; }
    void *buf = malloc((size_t)n);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) { free(buf); buf = NULL; }
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void fail_job(const char *label, int wave, const char *msg) {
    printf("{\"label\":");
    json_str(stdout, label);
    printf(",\"wave\":%d,\"ok\":false,\"error\":", wave);
    json_str(stdout, msg);
    printf("}\n");
    fflush(stdout);
}

static int run_job(const char *label, const char *path, const char *spec, int wave) {
    char msg[512];
    size_t len = 0;
    uint32_t *code = read_file(path, &len);
    if (!code || len % 4) { snprintf(msg, sizeof msg, "cannot read %s", path); fail_job(label, wave, msg); free(code); return 1; }
    Reflection r;
    if (reflect(code, len / 4, &r) != 0) { fail_job(label, wave, r.err); free(code); return 1; }

    /* specialization constants */
    uint32_t vals[MAX_SPEC];
    VkSpecializationMapEntry ents[MAX_SPEC];
    uint32_t nval = 0;
    if (spec && strcmp(spec, "-") != 0 && *spec) {
        const char *p = spec;
        while (*p) {
            char *end;
            errno = 0;
            long long v = strtoll(p, &end, 0);
            if (end == p || errno || nval >= MAX_SPEC) { snprintf(msg, sizeof msg, "bad spec '%s'", spec); fail_job(label, wave, msg); free(code); return 1; }
            vals[nval] = (uint32_t)v;
            ents[nval].constantID = nval;
            ents[nval].offset = nval * 4;
            ents[nval].size = 4;
            nval++;
            p = end;
            if (*p == ',') p++;
        }
    }
    for (uint32_t k = 0; k < nval; ++k) {
        if (k >= r.nspec || r.spec_size[k] == 0) {
            snprintf(msg, sizeof msg, "spec has %u values but the shader declares constant_id < %u", nval, r.nspec);
            fail_job(label, wave, msg); free(code); return 1;
        }
        if (r.spec_size[k] != 4) { snprintf(msg, sizeof msg, "constant_id %u is %u bytes (only 32-bit supported)", k, r.spec_size[k]); fail_job(label, wave, msg); free(code); return 1; }
    }
    VkSpecializationInfo si = {nval, ents, nval * 4, vals};

    /* layouts */
    uint32_t nsets = 0;
    for (int k = 0; k < r.nb; ++k) if (r.b[k].set + 1 > nsets) nsets = r.b[k].set + 1;
    VkDescriptorSetLayout sls[MAX_SETS] = {0};
    for (uint32_t s = 0; s < nsets; ++s) {
        VkDescriptorSetLayoutBinding lb[MAX_BINDINGS];
        uint32_t n = 0;
        for (int k = 0; k < r.nb; ++k) {
            if (r.b[k].set != s) continue;
            lb[n] = (VkDescriptorSetLayoutBinding){r.b[k].binding, r.b[k].type, 1, VK_SHADER_STAGE_COMPUTE_BIT, NULL};
            n++;
        }
        VkDescriptorSetLayoutCreateInfo ci = {VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO, NULL, 0, n, lb};
        CHECK(vkCreateDescriptorSetLayout(dev, &ci, NULL, &sls[s]), "vkCreateDescriptorSetLayout");
    }
    VkPushConstantRange pcr = {VK_SHADER_STAGE_COMPUTE_BIT, 0, (r.push_size + 3u) & ~3u};
    VkPipelineLayoutCreateInfo plci = {VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO, NULL, 0, nsets, sls,
                                       r.push_size ? 1u : 0u, r.push_size ? &pcr : NULL};
    VkPipelineLayout pl;
    CHECK(vkCreatePipelineLayout(dev, &plci, NULL, &pl), "vkCreatePipelineLayout");
    VkShaderModuleCreateInfo smci = {VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO, NULL, 0, len, code};
    VkShaderModule sm;
    CHECK(vkCreateShaderModule(dev, &smci, NULL, &sm), "vkCreateShaderModule");

    VkPipelineShaderStageRequiredSubgroupSizeCreateInfo rss = {
        VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_REQUIRED_SUBGROUP_SIZE_CREATE_INFO, NULL, (uint32_t)wave};
    int ret = 0;
    if (wave) {
        if (!have_sg_control || !(sg_stages & VK_SHADER_STAGE_COMPUTE_BIT) || (uint32_t)wave < min_sg || (uint32_t)wave > max_sg) {
            snprintf(msg, sizeof msg, "wave%d not offered (subgroup size control: %s, sizes %u..%u)", wave,
                     have_sg_control ? "yes" : "no", min_sg, max_sg);
            fail_job(label, wave, msg);
            ret = 1;
            goto out;
        }
    }
    VkComputePipelineCreateInfo cpci = {VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO, NULL,
        VK_PIPELINE_CREATE_CAPTURE_STATISTICS_BIT_KHR,
        {VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO, wave ? &rss : NULL, 0, VK_SHADER_STAGE_COMPUTE_BIT, sm, "main",
         nval ? &si : NULL},
        pl, VK_NULL_HANDLE, -1};
    VkPipeline pipe;
    double t0 = now_ms();
    VkResult vr = vkCreateComputePipelines(dev, VK_NULL_HANDLE, 1, &cpci, NULL, &pipe);
    double ms = now_ms() - t0;
    if (vr != VK_SUCCESS) {
        snprintf(msg, sizeof msg, "vkCreateComputePipelines: VkResult %d", (int)vr);
        fail_job(label, wave, msg);
        ret = 1;
        goto out;
    }
    VkPipelineInfoKHR pinfo = {VK_STRUCTURE_TYPE_PIPELINE_INFO_KHR, NULL, pipe};
    uint32_t nexec = 0;
    CHECK(get_exec_props(dev, &pinfo, &nexec, NULL), "vkGetPipelineExecutablePropertiesKHR");
    VkPipelineExecutablePropertiesKHR *ep = calloc(nexec + 1, sizeof *ep);
    for (uint32_t e = 0; e < nexec; ++e) ep[e].sType = VK_STRUCTURE_TYPE_PIPELINE_EXECUTABLE_PROPERTIES_KHR;
    CHECK(get_exec_props(dev, &pinfo, &nexec, ep), "vkGetPipelineExecutablePropertiesKHR");
    printf("{\"label\":");
    json_str(stdout, label);
    printf(",\"wave\":%d,\"ok\":true,\"ms\":%.1f,\"push_bytes\":%u,\"bindings\":%d,\"spec_ids\":%u,\"executables\":[",
           wave, ms, r.push_size, r.nb, r.nspec);
    for (uint32_t e = 0; e < nexec; ++e) {
        VkPipelineExecutableInfoKHR ei = {VK_STRUCTURE_TYPE_PIPELINE_EXECUTABLE_INFO_KHR, NULL, pipe, e};
        uint32_t nst = 0;
        CHECK(get_exec_stats(dev, &ei, &nst, NULL), "vkGetPipelineExecutableStatisticsKHR");
        VkPipelineExecutableStatisticKHR *st = calloc(nst + 1, sizeof *st);
        for (uint32_t k = 0; k < nst; ++k) st[k].sType = VK_STRUCTURE_TYPE_PIPELINE_EXECUTABLE_STATISTIC_KHR;
        CHECK(get_exec_stats(dev, &ei, &nst, st), "vkGetPipelineExecutableStatisticsKHR");
        printf("%s{\"name\":", e ? "," : "");
        json_str(stdout, ep[e].name);
        printf(",\"subgroup\":%u,\"stats\":{", ep[e].subgroupSize);
        for (uint32_t k = 0; k < nst; ++k) {
            if (k) putchar(',');
            json_str(stdout, st[k].name);
            putchar(':');
            switch (st[k].format) {
            case VK_PIPELINE_EXECUTABLE_STATISTIC_FORMAT_BOOL32_KHR: printf("%s", st[k].value.b32 ? "true" : "false"); break;
            case VK_PIPELINE_EXECUTABLE_STATISTIC_FORMAT_INT64_KHR: printf("%lld", (long long)st[k].value.i64); break;
            case VK_PIPELINE_EXECUTABLE_STATISTIC_FORMAT_UINT64_KHR: printf("%llu", (unsigned long long)st[k].value.u64); break;
            case VK_PIPELINE_EXECUTABLE_STATISTIC_FORMAT_FLOAT64_KHR: printf("%.6g", st[k].value.f64); break;
            default: printf("null");
            }
        }
        printf("}}");
        free(st);
    }
    printf("]}\n");
    fflush(stdout);
    free(ep);
    vkDestroyPipeline(dev, pipe, NULL);
out:
    vkDestroyShaderModule(dev, sm, NULL);
    vkDestroyPipelineLayout(dev, pl, NULL);
    for (uint32_t s = 0; s < nsets; ++s) vkDestroyDescriptorSetLayout(dev, sls[s], NULL);
    free(code);
    return ret;
}

int main(int argc, char **argv) {
    if (argc > 1) { fprintf(stderr, "usage: %s < jobs (see the comment at the top of isa_stats.c)\n", argv[0]); return 2; }
    VkApplicationInfo app = {VK_STRUCTURE_TYPE_APPLICATION_INFO, NULL, "isa_stats", 1, NULL, 0, VK_API_VERSION_1_3};
    VkInstanceCreateInfo ici = {VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO, NULL, 0, &app, 0, NULL, 0, NULL};
    VkInstance inst;
    CHECK(vkCreateInstance(&ici, NULL, &inst), "vkCreateInstance");
    uint32_t npd = 0;
    CHECK(vkEnumeratePhysicalDevices(inst, &npd, NULL), "vkEnumeratePhysicalDevices");
    if (npd == 0) { fprintf(stderr, "isa_stats: no Vulkan physical device\n"); return 2; }
    VkPhysicalDevice *pds = calloc(npd, sizeof *pds);
    CHECK(vkEnumeratePhysicalDevices(inst, &npd, pds), "vkEnumeratePhysicalDevices");
    VkPhysicalDevice pd = pds[0];

    VkPhysicalDeviceSubgroupSizeControlProperties sgp = {VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_SIZE_CONTROL_PROPERTIES, NULL};
    VkPhysicalDeviceSubgroupProperties sub = {VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES, &sgp};
    VkPhysicalDeviceProperties2 props = {VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, &sub};
    vkGetPhysicalDeviceProperties2(pd, &props);
    min_sg = sgp.minSubgroupSize;
    max_sg = sgp.maxSubgroupSize;
    sg_stages = sgp.requiredSubgroupSizeStages;

    uint32_t next = 0;
    vkEnumerateDeviceExtensionProperties(pd, NULL, &next, NULL);
    VkExtensionProperties *exts = calloc(next + 1, sizeof *exts);
    vkEnumerateDeviceExtensionProperties(pd, NULL, &next, exts);
    int have_exec = 0;
    for (uint32_t i = 0; i < next; ++i)
        if (!strcmp(exts[i].extensionName, VK_KHR_PIPELINE_EXECUTABLE_PROPERTIES_EXTENSION_NAME)) have_exec = 1;
    if (!have_exec) { fprintf(stderr, "isa_stats: %s does not offer VK_KHR_pipeline_executable_properties\n", props.properties.deviceName); return 2; }

    VkPhysicalDevicePipelineExecutablePropertiesFeaturesKHR pef = {
        VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PIPELINE_EXECUTABLE_PROPERTIES_FEATURES_KHR, NULL};
    VkPhysicalDeviceVulkan13Features f13 = {VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_3_FEATURES, &pef};
    VkPhysicalDeviceFeatures2 feats = {VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2,
                                       props.properties.apiVersion >= VK_API_VERSION_1_3 ? (void *)&f13 : (void *)&pef};
    vkGetPhysicalDeviceFeatures2(pd, &feats);
    if (!pef.pipelineExecutableInfo) { fprintf(stderr, "isa_stats: pipelineExecutableInfo feature missing\n"); return 2; }
    have_sg_control = props.properties.apiVersion >= VK_API_VERSION_1_3 && f13.subgroupSizeControl;
    /* enable exactly what is needed (the statistics, subgroup size control) */
    VkPhysicalDevicePipelineExecutablePropertiesFeaturesKHR pef_on = {
        VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PIPELINE_EXECUTABLE_PROPERTIES_FEATURES_KHR, NULL, VK_TRUE};
    VkPhysicalDeviceVulkan13Features f13_on = {VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_3_FEATURES, &pef_on};
    f13_on.subgroupSizeControl = have_sg_control ? VK_TRUE : VK_FALSE;
    f13_on.computeFullSubgroups = f13.computeFullSubgroups;
    VkPhysicalDeviceFeatures2 feats_on = {VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2,
                                          props.properties.apiVersion >= VK_API_VERSION_1_3 ? (void *)&f13_on : (void *)&pef_on};
    /* no other optional feature: Kompute (how vkconvt runs them) enables none */

    uint32_t nq = 0;
    vkGetPhysicalDeviceQueueFamilyProperties(pd, &nq, NULL);
    VkQueueFamilyProperties *qf = calloc(nq + 1, sizeof *qf);
    vkGetPhysicalDeviceQueueFamilyProperties(pd, &nq, qf);
    uint32_t qfi = 0;
    for (uint32_t i = 0; i < nq; ++i) if (qf[i].queueFlags & VK_QUEUE_COMPUTE_BIT) { qfi = i; break; }
    float prio = 1.0f;
    VkDeviceQueueCreateInfo qci = {VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO, NULL, 0, qfi, 1, &prio};
    const char *ext_on[] = {VK_KHR_PIPELINE_EXECUTABLE_PROPERTIES_EXTENSION_NAME};
    VkDeviceCreateInfo dci = {VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO, &feats_on, 0, 1, &qci, 0, NULL, 1, ext_on, NULL};
    CHECK(vkCreateDevice(pd, &dci, NULL, &dev), "vkCreateDevice");
    get_exec_props = (PFN_vkGetPipelineExecutablePropertiesKHR)vkGetDeviceProcAddr(dev, "vkGetPipelineExecutablePropertiesKHR");
    get_exec_stats = (PFN_vkGetPipelineExecutableStatisticsKHR)vkGetDeviceProcAddr(dev, "vkGetPipelineExecutableStatisticsKHR");
    if (!get_exec_props || !get_exec_stats) { fprintf(stderr, "isa_stats: pipeline executable functions missing\n"); return 2; }

    char line[8192];
    int failed = 0;
    while (fgets(line, sizeof line, stdin)) {
        size_t n = strlen(line);
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
        if (!n || line[0] == '#') continue;
        char *f[4] = {0};
        int nf = 0;
        char *p = line;
        while (nf < 4) {
            f[nf++] = p;
            char *t = strchr(p, '\t');
            if (!t) break;
            *t = 0;
            p = t + 1;
        }
        if (nf < 2) { fail_job(line, 0, "expected: label<TAB>spv<TAB>spec<TAB>wave"); failed = 1; continue; }
        int wave = nf >= 4 ? atoi(f[3]) : 0;
        failed |= run_job(f[0], f[1], nf >= 3 ? f[2] : "-", wave);
    }
    vkDestroyDevice(dev, NULL);
    vkDestroyInstance(inst, NULL);
    return failed;
}
