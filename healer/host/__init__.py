"""The host's kernel and devices, as both the monitor (reads) and the actuators (writes)
see them: cgroupfs mounts and knob names, network namespaces, GPU backends."""
