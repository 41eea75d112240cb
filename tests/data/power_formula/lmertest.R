# The lmerTest numbers frozen in tests/test_power_formula.py (R 4.2.2, lme4 1.1-31,
# lmerTest 3.1-3): Rscript tests/data/power_formula/lmertest.R from the repository root.
# bdi-rep1.csv is replicate 1 of
#   trialsim simulate scenarios/depression-bdi.toml --set groups.icc_group=0.1 \
#     --set groups.icc_trainer=0.08 --reps 2 --seed 7
# Controls are in no group and with no trainer: lme4 writes such a term (0 + treated | g),
# the controls sharing one placeholder level that their zero column never uses.
suppressMessages(library(lmerTest))
d <- read.csv("tests/data/power_formula/bdi-rep1.csv")
base <- d[d$visit == 0, c("participant", "bdi")]
names(base)[2] <- "baseline"
last <- merge(d[d$visit == max(d$visit) & !is.na(d$bdi), ], base, by = "participant")
last$arm <- factor(last$arm, levels = c("tau", "group-cbt"))
last$treated <- as.numeric(last$arm == "group-cbt")
last$group <- ifelse(is.na(last$group), "none", last$group)
last$trainer <- ifelse(is.na(last$trainer), "none", last$trainer)
f <- lmer(bdi ~ arm + baseline + municipality + drug + length + (0 + treated | group) +
  (0 + treated | trainer), data = last, REML = TRUE,
  control = lmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-12, maxfun = 1e5)))
print(summary(f)$coefficients["armgroup-cbt", ], digits = 15)
print(as.data.frame(VarCorr(f))[, c("grp", "vcov")], digits = 15)
