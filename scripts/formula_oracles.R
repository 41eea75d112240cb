# Reference numbers for the formula, repeated-measures and multiplicity tests
# (tests/test_formula.py, tests/test_repeated.py, tests/test_multiarm.py), printed as JSON.
# Usage, from the repository root:  Rscript scripts/formula_oracles.R
# Needs R with lme4, lmerTest, multcomp (Debian: r-cran-lme4 r-cran-lmertest r-cran-multcomp)
# and jsonlite. Dev tool, not a test dependency: the numbers are frozen in the tests.
suppressPackageStartupMessages({
  library(lmerTest)
  library(multcomp)
  library(jsonlite)
})
real <- file.path("tests", "data", "real")
bt <- read.csv(file.path(real, "btheb.csv"), check.names = FALSE)
bt$treatment <- factor(bt$treatment, levels = c("TAU", "BtheB"))
bt$drug <- factor(bt$drug, levels = c("No", "Yes"))
bt$length <- factor(bt$length, levels = c("<6m", ">6m"))
an <- read.csv(file.path(real, "anorexia.csv"))
an$treat <- factor(an$treat, levels = c("Cont", "CBT", "FT"))
st <- read.csv(file.path(real, "star.csv"), colClasses = c(participant = "character"))
st$arm <- factor(st$arm, levels = c("reg", "small", "reg+A"))
st$sx <- factor(st$sx, levels = c("F", "M"))
st$school <- factor(st$school)
st$class <- factor(st$class)
bt_long <- do.call(rbind, lapply(c(2, 3, 5, 8), function(m)
  data.frame(participant = bt$participant, drug = bt$drug, length = bt$length,
             treatment = bt$treatment, bdi.pre = bt$bdi.pre, month = m,
             bdi = bt[[paste0("bdi.", m, "m")]])))
bt_long <- bt_long[!is.na(bt_long$bdi), ]
bt_long$participant <- factor(bt_long$participant)

term <- function(fit, name) {
  s <- coef(summary(fit))
  list(estimate = s[name, "Estimate"], se = s[name, "Std. Error"], df = s[name, "df"],
       p = s[name, "Pr(>|t|)"])
}
tight <- lmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-12, maxfun = 1e5))
out <- list()

# repeated measures, treatment effect at month 8: arm x month with month 8 the reference
bt_long$month_last <- relevel(factor(bt_long$month), ref = "8")
f_last <- lmer(bdi ~ bdi.pre + treatment * month_last + drug + length + (1 | participant),
               data = bt_long, REML = TRUE, control = tight)
out$btheb_repeated_last <- c(
  call = "lmer(bdi ~ bdi.pre + treatment * relevel(factor(month), ref = '8') + drug + length + (1 | participant), data = bt_long, REML = TRUE, control = bobyqa rhoend 1e-12)",
  term(f_last, "treatmentBtheB"))
# average of the four visit effects: arm x month in sum-to-zero coding
bt_long$month_sum <- factor(bt_long$month)
contrasts(bt_long$month_sum) <- contr.sum(4)
f_avg <- lmer(bdi ~ bdi.pre + treatment * month_sum + drug + length + (1 | participant),
              data = bt_long, REML = TRUE, control = tight)
out$btheb_repeated_average <- c(
  call = "lmer(bdi ~ bdi.pre + treatment * month_sum + drug + length + (1 | participant)), month_sum = factor(month) with contr.sum(4)",
  term(f_avg, "treatmentBtheB"))

# multiplicity: anorexia ANCOVA (lm), Holm and Dunnett (single-step, multivariate t)
f_an <- lm(weight_post ~ treat + weight_pre, data = an)
p_an <- coef(summary(f_an))[c("treatCBT", "treatFT"), "Pr(>|t|)"]
set.seed(1)
g_an <- glht(f_an, linfct = mcp(treat = "Dunnett"))
s_an <- summary(g_an, test = adjusted("single-step"))
set.seed(1)
ci_an <- confint(g_an, level = 0.95)
out$anorexia_multiplicity <- list(
  call = "glht(lm(weight_post ~ treat + weight_pre, data = an), linfct = mcp(treat = 'Dunnett')); p.adjust(p, 'holm')",
  holm = unname(p.adjust(p_an, "holm")),
  dunnett_p = unname(s_an$test$pvalues),
  dunnett_ci_low = unname(ci_an$confint[, "lwr"]),
  dunnett_ci_high = unname(ci_an$confint[, "upr"]),
  dunnett_crit = attr(ci_an$confint, "calpha"),
  df = f_an$df.residual)

# STAR three arms (lmer, Satterthwaite): Holm; Dunnett with the smaller Satterthwaite df
f_st <- lmer(math ~ arm + school + sx + (1 | class), data = st, REML = TRUE, control = tight)
s_st <- coef(summary(f_st))[c("armsmall", "armreg+A"), ]
df_min <- min(s_st[, "df"])
set.seed(1)
g_st <- glht(f_st, linfct = mcp(arm = "Dunnett"), df = floor(df_min))
set.seed(1)
g_st_exact <- glht(f_st, linfct = rbind(small = c(0, 1, 0, rep(0, 24)),
                                        regA = c(0, 0, 1, rep(0, 24))), df = floor(df_min))
out$star_multiplicity <- list(
  call = "lmer(math ~ arm + school + sx + (1 | class), data = st); glht(fit, mcp(arm = 'Dunnett'), df = floor(min Satterthwaite df)); p.adjust(p, 'holm')",
  holm = unname(p.adjust(s_st[, "Pr(>|t|)"], "holm")),
  df_floor = floor(df_min),
  dunnett_p = unname(summary(g_st, test = adjusted("single-step"))$test$pvalues),
  corr = cov2cor(vcov(f_st)[c("armsmall", "armreg+A"), c("armsmall", "armreg+A")])[1, 2])

# Dunnett (1955) critical values through mvtnorm: k = 2, 3 comparisons, df = 10, 20, Inf,
# equal allocation (correlation 0.5), two-sided 95%
crit <- function(k, df) {
  R <- matrix(0.5, k, k); diag(R) <- 1
  set.seed(1)
  mvtnorm::qmvt(0.95, tail = "both.tails", df = df, corr = R, abseps = 1e-6)$quantile
}
out$dunnett_table <- list(
  call = "mvtnorm::qmvt(0.95, tail = 'both.tails', df, corr = 0.5 off the diagonal)",
  k2_df10 = crit(2, 10), k2_df20 = crit(2, 20), k3_df10 = crit(3, 10), k3_df20 = crit(3, 20))
out$versions <- list(R = R.version.string, lme4 = as.character(packageVersion("lme4")),
                     lmerTest = as.character(packageVersion("lmerTest")),
                     multcomp = as.character(packageVersion("multcomp")),
                     mvtnorm = as.character(packageVersion("mvtnorm")))
cat(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE), "\n")

# STAR with school and class intercepts (classes nested in schools), tests/test_formula.py
f_nest <- lmer(math ~ arm + sx + (1 | school) + (1 | class), data = st, REML = TRUE,
               control = tight)
cat(toJSON(list(star_school_class = list(
  call = "lmer(math ~ arm + sx + (1 | school) + (1 | class), data = st, REML = TRUE, control = bobyqa rhoend 1e-12)",
  small = term(f_nest, "armsmall"), regA = term(f_nest, "armreg+A"),
  var = setNames(as.list(as.data.frame(VarCorr(f_nest))$vcov),
                 as.data.frame(VarCorr(f_nest))$grp))),
  auto_unbox = TRUE, digits = NA, pretty = TRUE), "\n")
