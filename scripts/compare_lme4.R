# Fit every dataset in a CSV (columns rep, y, treat, baseline, stratum, group) with lmerTest:
# y ~ treat + baseline + factor(stratum) + (0 + treat | group), REML, Satterthwaite df.
# Usage: Rscript scripts/compare_lme4.R in.csv out.csv   (dev check, not a test dependency)
suppressPackageStartupMessages(library(lmerTest))
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1])
d$stratum <- factor(d$stratum)
d$group <- factor(d$group)
out <- do.call(rbind, lapply(split(d, d$rep), function(x) {
  fit <- lmer(y ~ treat + baseline + stratum + (0 + treat | group), data = x, REML = TRUE,
              control = lmerControl(check.conv.singular = "ignore"))
  co <- summary(fit)$coefficients
  data.frame(rep = x$rep[1], estimate = co["treat", "Estimate"], se = co["treat", "Std. Error"],
             df = co["treat", "df"], sigma2_cluster = VarCorr(fit)$group[1],
             reml_loglik = as.numeric(logLik(fit)), singular = isSingular(fit))
}))
write.csv(out, args[2], row.names = FALSE)
