# lmerTest / pbkrtest oracle for the `mar` analysis (trialsim.analyse.mar) on a simulated SFT
# trial with attendance: tests/data/models/sft_repeated.csv (trialsim simulate
# scenarios/sft-19m.toml --reps 1 --seed 7 --outcomes psp; 340 participants, visits at 0, 9
# and 15 months, treatment groups in one arm, municipalities as strata).
# The model: every post-baseline visit with psp and a baseline psp, the attended fraction
# centred on its mean in each arm (over participants with a baseline), one slope per visit:
#   lmer(psp ~ arm * relevel(factor(month), ref = "15") + baseline + municipality
#        + attendance_c:relevel(factor(month), ref = "15")
#        + (1 | participant) + (0 + treated | group), REML = TRUE)
# (controls in a dummy group "none" with treated = 0). Prints JSON (estimate, SE and
# Satterthwaite df of the arm, and its Kenward-Roger SE and df).
# Usage, from the repository root: Rscript scripts/mar_oracle.R
# Dev tool, not a test dependency: the numbers are frozen in tests/test_mar.py.
suppressPackageStartupMessages({library(lmerTest); library(pbkrtest); library(jsonlite)})
d <- read.csv(file.path("tests", "data", "models", "sft_repeated.csv"))
d$arm <- factor(d$arm, levels = c("control", "treatment"))
d$municipality <- factor(d$municipality)
wide <- d[d$visit == 0, c("participant", "arm", "psp", "sessions_offered", "sessions_attended")]
names(wide)[names(wide) == "psp"] <- "baseline"
wide$fraction <- ifelse(wide$sessions_offered > 0,
                        wide$sessions_attended / pmax(wide$sessions_offered, 1), 0)
with_base <- !is.na(wide$baseline)
arm_mean <- tapply(wide$fraction[with_base], wide$arm[with_base], mean)
wide$attendance_c <- wide$fraction - arm_mean[as.character(wide$arm)]
long <- merge(d[d$visit > 0, ], wide[, c("participant", "baseline", "attendance_c")])
long <- long[!is.na(long$psp) & !is.na(long$baseline), ]
long$month_last <- relevel(factor(long$month), ref = "15")
long$treated <- as.numeric(long$arm == "treatment")
long$group <- factor(ifelse(is.na(long$group), "none", long$group))
long$participant <- factor(long$participant)
tight <- lmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-12, maxfun = 1e5))
fit <- lmer(psp ~ arm * month_last + baseline + municipality + attendance_c:month_last +
              (1 | participant) + (0 + treated | group), data = long, REML = TRUE,
            control = tight)
s <- coef(summary(fit))
kr <- coef(summary(fit, ddf = "Kenward-Roger"))
vc <- as.data.frame(VarCorr(fit))
out <- list(
  versions = list(R = R.version.string, lme4 = as.character(packageVersion("lme4")),
                  lmerTest = as.character(packageVersion("lmerTest")),
                  pbkrtest = as.character(packageVersion("pbkrtest"))),
  nobs = nobs(fit), arm_means = as.list(arm_mean),
  estimate = s["armtreatment", "Estimate"], se = s["armtreatment", "Std. Error"],
  df = s["armtreatment", "df"], se_kr = kr["armtreatment", "Std. Error"],
  df_kr = kr["armtreatment", "df"],
  attendance_slopes = as.list(fixef(fit)[grep("attendance_c", names(fixef(fit)))]),
  variance = setNames(as.list(vc$vcov), vc$grp))
cat(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE), "\n")
