"""Running experiments: stages, jobs, the Lightning module and trainer, cache, resume.

Modules are imported where needed (nothing here), so the light ones (`configstore`,
`identity`) stay light.
"""
