"""moto's Step Functions interpreter with stepml's patches (stepml.local.stepfunctions)."""
