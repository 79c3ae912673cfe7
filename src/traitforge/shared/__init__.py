"""What two or more stages share, below all of them: no module here imports a stage, the pipeline or the run context."""
