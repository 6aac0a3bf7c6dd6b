"""The app's workflows: each module defining ``create_workflow(agents)`` is one (its name is the module's)."""
