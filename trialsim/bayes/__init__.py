"""Bayesian analyses of trials (docs/analyses.md, "Bayesian models").

Modules, one idea each:

- :mod:`.priors` named effect priors (weakly informative, sceptical, enthusiastic, flat, custom);
- :mod:`.distributions` design-prior strings such as ``normal:4,2`` or ``beta:2,30``;
- :mod:`.reanalysis` normal-normal reanalysis of a published estimate;
- :mod:`.fast` the exact posterior of the Gaussian mixed model by quadrature, batched;
- :mod:`.models` the PyMC models; :mod:`.sampling` compiling once and sampling with nutpie;
- :mod:`.summary` posterior summaries and diagnostics with remedies; :mod:`.plots` figures;
- :mod:`.analysis` one trial-data set from priors to summary (``trialsim bayes``);
  :mod:`.output` atomic JSON / netCDF writing with provenance;
- :mod:`.assurance` assurance and Bayesian operating characteristics of a decision rule.
"""
