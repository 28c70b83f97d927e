"""The Vulkan-only part of vkconvt (everything that touches kp or the Vulkan loader):

    vkinfo.py    device facts read from the loader with ctypes (limits, memory types, subgroups)
    shaders.py   the SPIR-V modules, checked against their build manifest
    memory.py    which memory type each buffer takes, by its flags and direction
    device.py    one kp.Manager per device: buffer pool, pipelines, recordings, counters, accounting
    execute.py   a schedule recorded into one command buffer per step, submitted once
    arrays.py    DeviceArray: data kept on the device between calls
"""
