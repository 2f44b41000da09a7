"""Stateful fakes of the services the provider talks to (Slurm CLI, slurmrestd)."""
