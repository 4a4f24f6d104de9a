//! The catalogue as the public sees it: which procedures each agency offers online (and at which level) and by
//! post, as in force on a day.

use crate::App;
use chrono::NaiveDate;
use domain::event::{AgencyLevel, OfferLevel};
use domain::AgencyCode;
use serde::Serialize;

#[derive(Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CatalogueProcedure {
    pub procedure: String,
    pub name: String,
    pub online_level: OfferLevel,
    pub postal_receive: bool,
    pub postal_return: bool,
    pub effective_from: chrono::NaiveDate,
}

#[derive(Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CatalogueAgency {
    pub agency: AgencyCode,
    pub name: String,
    pub level: AgencyLevel,
    pub parent: Option<AgencyCode>,
    pub procedures: Vec<CatalogueProcedure>,
}

#[derive(Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CatalogueView {
    /// The date (Vietnam time) whose offers are shown.
    pub as_of: chrono::NaiveDate,
    pub agencies: Vec<CatalogueAgency>,
}

impl App {
    /// The offers in force on `day` (a Vietnam date), of every agency or of `agency` only.
    pub fn catalogue_view(&self, day: NaiveDate, agency: Option<&AgencyCode>) -> CatalogueView {
        let catalogue = self.catalogue();
        let agencies = catalogue
            .agencies()
            .filter(|a| agency.is_none_or(|want| &a.code == want))
            .map(|a| CatalogueAgency {
                agency: a.code.clone(),
                name: a.name.clone(),
                level: a.level,
                parent: a.parent.clone(),
                procedures: catalogue
                    .offers_on(day, Some(&a.code))
                    .into_iter()
                    .map(|o| CatalogueProcedure {
                        procedure: o.procedure.to_string(),
                        name: o.name.clone(),
                        online_level: o.online_level,
                        postal_receive: o.postal_receive,
                        postal_return: o.postal_return,
                        effective_from: o.effective_from,
                    })
                    .collect(),
            })
            .collect();
        CatalogueView {
            as_of: day,
            agencies,
        }
    }
}
