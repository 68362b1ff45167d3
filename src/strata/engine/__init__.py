"""The merge engine: plan which extensions go where (pure), then apply the plan to the kernel."""
