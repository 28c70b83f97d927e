// Shared by every vkconvt shader. All push constants are 32-bit unsigned, in the order the host
// packs them (vkconvt/backends/vulkan.py: PUSH[<op>]). base_x/base_y/base_z are workgroup offsets
// so one logical grid larger than maxComputeWorkGroupCount can be dispatched in several parts.

// The workgroup id of this invocation in the whole logical grid.
#define GROUP_X (gl_WorkGroupID.x + pc.base_x)
#define GROUP_Y (gl_WorkGroupID.y + pc.base_y)
#define GROUP_Z (gl_WorkGroupID.z + pc.base_z)
#define GLOBAL_X (GROUP_X * gl_WorkGroupSize.x + gl_LocalInvocationID.x)
#define GLOBAL_Y (GROUP_Y * gl_WorkGroupSize.y + gl_LocalInvocationID.y)

// Bias of a piece's channel c: the piece holds `gcount` groups of `cocount` channels, starting at
// group g0 and, inside each group, at channel co0 of the group's cog channels.
#define BIAS_CHANNEL(c) ((pc.g0 + (c) / pc.cocount) * pc.cog + pc.co0 + (c) % pc.cocount)
