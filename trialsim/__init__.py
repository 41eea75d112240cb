"""trialsim: simulation, power and Bayesian analysis for clustered group trials.

Data flows one way: Scenario -> simulate -> TrialData -> analyse -> Estimates ->
summarise -> OperatingCharacteristics -> report.
"""

__version__ = "0.1.0"
