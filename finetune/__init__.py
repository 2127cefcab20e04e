"""LoRA fine-tuning of the assistant model: data, trainer, adapter registry."""
