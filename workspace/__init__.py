"""The pages that compose several domains: the worklist, My work and the patient chart."""
