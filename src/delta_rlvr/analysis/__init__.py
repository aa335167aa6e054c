"""Looking at runs and at DelTA: `delta-rlvr compare`, `inspect` and `audit-proxy`, and the plots.

- `compare`: methods x seeds, trained, evaluated, tested (Mann-Whitney) and plotted.
- `inspect`: DelTA coefficients on sampled responses, in the terminal, as HTML, as a token cloud.
- `audit`: coefficients under each token-gradient proxy against a count-sketched full gradient.
- `plots`: every figure and page (a run's curves.png and tokens.html, a comparison's figures).

These sit above training and evaluation: they run the trainer's stages and the evaluator.
See docs/evaluation.md.
"""
