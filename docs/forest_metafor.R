# metafor's forest() for the demo's functioning / worked vs did not work estimates, for the
# side-by-side comparison in docs/forest_comparison.md.
# Rscript docs/forest_metafor.R results/tables/per_study.tsv docs/forest_metafor.png
library(metafor)
args <- commandArgs(trailingOnly = TRUE)
d <- read.delim(args[1])
d <- d[d$outcome == "functioning" & d$term == "employed" & d$status == "estimated", ]
d <- d[order(d$study), ]
fit <- rma(yi = estimate, sei = se, data = d, method = "REML", slab = paste0(study, " (n=", n, ")"))
png(args[2], width = 1100, height = 520, res = 110)
forest(fit, addpred = TRUE, header = c("Study", "SMD [95% CI]"), showweights = TRUE, xlab = "Standardized mean difference",
       mlab = "RE model (REML)")
text(-1.1, -1.6, pos = 4, cex = 0.8, bquote(paste("Q = ", .(formatC(fit$QE, digits = 2, format = "f")), ", df = ", .(fit$k - 1),
     ", p = ", .(formatC(fit$QEp, digits = 3, format = "f")), "; ", I^2, " = ", .(formatC(fit$I2, digits = 1, format = "f")), "%; ",
     tau^2, " = ", .(formatC(fit$tau2, digits = 3, format = "f")))))
dev.off()
print(fit)
print(predict(fit))
